//! The `#[ipc2::service]` attribute. Use it through the `ipc2` crate
//! (`#[ipc2::service]`); the code it generates names only `::ipc2` paths, so
//! the crate that holds the trait needs no other dependency of ipc2's.
//!
//! - `model`: reads the trait and checks it can become a service; every
//!   rejection says what to change, at the tokens to change.
//! - `expand`: writes the generated items.

mod expand;
mod model;

use proc_macro::TokenStream;

/// Turns a trait into a typed service between a host and its worker
/// processes. See the `ipc2` crate's documentation of `service` for what it
/// generates and the rules it follows.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let item = proc_macro2::TokenStream::from(item);
    match model::Service::read(args, item) {
        Ok(service) => expand::expand(&service).into(),
        Err(error) => error.to_compile_error().into(),
    }
}
