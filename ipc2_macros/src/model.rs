//! A service as read from the user's trait, and every check that decides
//! whether a trait can be one.
//!
//! All problems found are reported together, each at the tokens to change
//! and with what to write instead, so a user fixes a trait in one pass.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::{
    Attribute, FnArg, Ident, Item, ItemTrait, Pat, ReceiverKind, ReturnType, Safety, Signature,
    TraitItem, TraitItemFn, Type, TypeParamBound, Visibility,
};

/// A trait that passed every check.
pub struct Service {
    /// The trait's own attributes (its docs), forwarded as they are.
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    /// The user's supertraits; the generated trait adds `Send + Sync + 'static`.
    pub supertraits: Vec<TypeParamBound>,
    pub methods: Vec<Method>,
}

/// One method of the service.
pub struct Method {
    /// The user's attributes, without `#[ipc2(..)]`.
    pub attrs: Vec<Attribute>,
    /// The declaration as written (arguments, return type, `async`).
    pub sig: Signature,
    /// Name of its variant in the request and response enums.
    pub variant: Ident,
    /// Argument names and types, in order.
    pub args: Vec<(Ident, Type)>,
    /// What it returns (`()` when nothing is written).
    pub output: Type,
    /// Written as a type named `Result`: the caller gets `CallError<E>`.
    pub fallible: bool,
    /// `#[ipc2(oneway)]`: sent with `send_unidirectional`, no reply.
    pub oneway: bool,
}

impl Method {
    pub fn is_async(&self) -> bool {
        self.sig.asyncness.is_some()
    }

    /// The method's name as users write it (without `r#`).
    pub fn name(&self) -> String {
        self.sig.ident.unraw().to_string()
    }

    /// Attributes that decide whether the method exists (`#[cfg]`), which
    /// every generated piece for it must carry too.
    pub fn cfgs(&self) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter().filter(|a| a.path().is_ident("cfg"))
    }

    /// Attributes worth repeating on the generated client method: docs,
    /// `cfg`, lint levels and deprecation.
    pub fn client_attrs(&self) -> impl Iterator<Item = &Attribute> {
        const KEPT: [&str; 7] = [
            "doc",
            "cfg",
            "allow",
            "warn",
            "deny",
            "expect",
            "deprecated",
        ];
        self.attrs
            .iter()
            .filter(|a| KEPT.iter().any(|kept| a.path().is_ident(kept)))
    }

    /// The user's doc comments.
    pub fn docs(&self) -> impl Iterator<Item = &Attribute> {
        self.attrs.iter().filter(|a| a.path().is_ident("doc"))
    }
}

/// Names the generated items use, which a method of the same name would
/// collide with, and what each generated item does.
const RESERVED: [(&str, &str); 5] = [
    (
        "serve",
        "`{trait}::serve`, which runs the service in a worker process",
    ),
    (
        "new",
        "`{trait}Client::new`, which makes a client from a pool",
    ),
    (
        "pool",
        "`{trait}Client::pool`, which returns the client's pool",
    ),
    (
        "with_timeout",
        "`{trait}Client::with_timeout`, which sets a deadline on the calls that follow",
    ),
    ("clone", "`Clone::clone` of `{trait}Client`"),
];

/// Collects errors so that all of them are reported at once.
#[derive(Default)]
struct Errors {
    all: Option<syn::Error>,
    count: usize,
}

impl Errors {
    fn push(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push_error(syn::Error::new_spanned(tokens, message));
    }

    fn push_error(&mut self, error: syn::Error) {
        self.count += 1;
        match &mut self.all {
            Some(errors) => errors.combine(error),
            None => self.all = Some(error),
        }
    }

    fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.all {
            Some(errors) => Err(errors),
            None => Ok(value),
        }
    }
}

impl Service {
    /// Reads the attribute's arguments and the item it is on.
    pub fn read(args: TokenStream, item: TokenStream) -> syn::Result<Self> {
        if !args.is_empty() {
            return Err(syn::Error::new_spanned(
                args,
                "#[ipc2::service] takes no arguments; options go on methods, e.g. \
                 #[ipc2(oneway)]",
            ));
        }
        let item: Item = syn::parse2(item)?;
        let def = match item {
            Item::Trait(def) => def,
            other => return Err(not_a_trait(&other)),
        };
        Self::from_trait(def)
    }

    fn from_trait(def: ItemTrait) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let ident = def.ident.clone();
        if let Some(unsafety) = &def.unsafety {
            errors.push(
                unsafety,
                "a service trait cannot be `unsafe`; remove `unsafe`",
            );
        }
        if let Some(auto) = &def.modifiers.auto_token {
            errors.push(
                auto,
                "a service trait cannot be an auto trait; remove `auto`",
            );
        }
        if !def.generics.params.is_empty() || def.generics.where_clause.is_some() {
            errors.push(
                &def.generics,
                "a service trait cannot have generic parameters: its requests must have one \
                 concrete type to cross to the worker process; remove them and use concrete \
                 types",
            );
        }
        for attr in def.attrs.iter().filter(|a| a.path().is_ident("ipc2")) {
            errors.push(
                attr,
                "#[ipc2(..)] options go on the trait's methods, not on the trait",
            );
        }

        let mut methods: Vec<Method> = Vec::new();
        for item in def.items {
            let TraitItem::Fn(function) = item else {
                errors.push(
                    &item,
                    "a service trait declares only methods; move this item out of the trait",
                );
                continue;
            };
            let Some(method) = read_method(function, &ident, &mut errors) else {
                continue;
            };
            if let Some(first) = methods.iter().find(|m| m.variant == method.variant) {
                errors.push(
                    &method.sig.ident,
                    format_args!(
                        "`{}` and `{}` would both become the request variant `{}`; rename one",
                        first.name(),
                        method.name(),
                        method.variant
                    ),
                );
                continue;
            }
            methods.push(method);
        }

        errors.finish(Self {
            attrs: def.attrs,
            vis: def.vis,
            ident,
            supertraits: def.supertraits.into_iter().collect(),
            methods,
        })
    }
}

/// The error for an item that is not a trait, at its keyword and name.
fn not_a_trait(item: &Item) -> syn::Error {
    const HOW: &str = "#[ipc2::service] goes on a trait that declares the service's methods, \
                       e.g. `trait Store { fn get(key: String) -> Option<String>; }`";
    let (head, what): (TokenStream, String) = match item {
        Item::Struct(s) => (head(&s.struct_token, &s.ident), "a struct".into()),
        Item::Enum(e) => (head(&e.enum_token, &e.ident), "an enum".into()),
        Item::Fn(f) => (head(&f.sig.fn_token, &f.sig.ident), "a function".into()),
        Item::Mod(m) => (head(&m.mod_token, &m.ident), "a module".into()),
        Item::Impl(i) => {
            let head = head(&i.impl_token, &i.self_ty);
            match &i.trait_ {
                Some((path, _)) => {
                    let name = path.to_token_stream().to_string().replace(' ', "");
                    (
                        head,
                        format!("an impl block; put it on the declaration of `{name}`"),
                    )
                }
                None => (head, "an impl block".into()),
            }
        }
        other => (other.to_token_stream(), "not a trait".into()),
    };
    syn::Error::new_spanned(head, format!("{HOW}; this is {what}"))
}

/// An item's keyword and name, where an error about the whole item points.
fn head(keyword: &impl ToTokens, name: &impl ToTokens) -> TokenStream {
    quote!(#keyword #name)
}

/// Checks one method; `None` if it cannot be used (the reasons are in
/// `errors`).
fn read_method(function: TraitItemFn, service: &Ident, errors: &mut Errors) -> Option<Method> {
    let before = errors.count;
    let TraitItemFn {
        attrs,
        sig,
        default,
        ..
    } = function;
    let (attrs, oneway) = take_options(attrs, errors);

    if let Some(body) = &default {
        errors.push(
            body,
            format_args!(
                "a service method has no body here: the worker implements it in \
                 `impl {service} for YourState`; remove the body"
            ),
        );
    }
    if let Some(token) = &sig.constness {
        errors.push(token, "a service method cannot be `const`; remove `const`");
    }
    match &sig.safety {
        Safety::Unsafe(token) => {
            errors.push(
                token,
                "a service method cannot be `unsafe`; remove `unsafe`",
            );
        }
        Safety::Safe(token) => errors.push(token, "a service method is not `safe`; remove it"),
        Safety::Default => {}
    }
    if let Some(abi) = &sig.abi {
        errors.push(abi, "a service method cannot name an ABI; remove it");
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(variadic, "a service method cannot be variadic");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            &sig.generics,
            "a service method cannot be generic: its arguments and result cross to the \
             worker process as one concrete type each; replace the type parameters with \
             concrete types",
        );
    }
    let name = sig.ident.unraw().to_string();
    if let Some((_, what)) = RESERVED.iter().find(|(reserved, _)| *reserved == name) {
        errors.push(
            &sig.ident,
            format_args!(
                "a method named `{name}` clashes with the generated {}; rename the method",
                what.replace("{trait}", &service.to_string())
            ),
        );
    }

    let mut args = Vec::new();
    for (position, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(receiver) => check_receiver(receiver, position, errors),
            FnArg::Typed(typed) => {
                check_type(&typed.ty, "argument", errors);
                match &*typed.pat {
                    Pat::Ident(pat)
                        if pat.by_ref.is_none()
                            && pat.mutability.is_none()
                            && pat.subpat.is_none() =>
                    {
                        args.push((pat.ident.clone(), (*typed.ty).clone()));
                    }
                    other => errors.push(
                        other,
                        "write a plain name for each argument (it becomes a field of the \
                         request), e.g. `key: String`",
                    ),
                }
            }
        }
    }

    let output = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => {
            check_type(ty, "return type", errors);
            (**ty).clone()
        }
    };
    if oneway && !is_unit(&output) {
        errors.push(
            &sig.output,
            "a #[ipc2(oneway)] method sends no reply, so it returns nothing: remove the \
             return type, or remove #[ipc2(oneway)] to wait for the reply",
        );
    }

    if errors.count > before {
        return None;
    }
    let variant = Ident::new(&upper_camel(&name), sig.ident.span());
    Some(Method {
        attrs,
        fallible: is_named_result(&output),
        variant,
        args,
        output,
        oneway,
        sig,
    })
}

/// Splits off `#[ipc2(..)]` attributes and reads their options.
fn take_options(attrs: Vec<Attribute>, errors: &mut Errors) -> (Vec<Attribute>, bool) {
    let mut oneway = false;
    let mut kept = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("ipc2") {
            kept.push(attr);
            continue;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("oneway") {
                oneway = true;
                Ok(())
            } else {
                Err(meta.error("unknown #[ipc2(..)] option; the option is `oneway`"))
            }
        });
        if let Err(error) = parsed {
            errors.push_error(error);
        }
    }
    (kept, oneway)
}

fn check_receiver(receiver: &syn::Receiver, position: usize, errors: &mut Errors) {
    const SHARED: &str = "but the calls of one worker run concurrently and share its state: \
                          write `&self` (or no receiver) and keep what changes behind a Mutex \
                          or atomics";
    if position > 0 {
        errors.push(receiver, "`self` can only be the first argument");
        return;
    }
    match &receiver.kind {
        ReceiverKind::Reference(_, lifetime, mutability) => {
            if mutability.is_some() {
                errors.push(
                    receiver,
                    format_args!("`&mut self` would give one call the state to itself, {SHARED}"),
                );
            } else if let Some(lifetime) = lifetime {
                errors.push(lifetime, "write `&self` without a lifetime");
            }
        }
        ReceiverKind::Value => errors.push(
            receiver,
            format_args!("`self` by value would consume the worker's state, {SHARED}"),
        ),
        _ => errors.push(
            receiver,
            format_args!("a typed `self` is not a handler's receiver, {SHARED}"),
        ),
    }
}

/// Rejects, anywhere inside `ty`, what cannot cross to another process or
/// would make the request generic: borrows, `impl Trait`, raw pointers, and
/// `Self` (the worker's state type, which the host does not know).
fn check_type(ty: &Type, role: &str, errors: &mut Errors) {
    match ty {
        Type::Reference(reference) => errors.push(
            reference,
            format_args!(
                "a borrowed {role} cannot cross to another process: use an owned type \
                 (`String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`)"
            ),
        ),
        Type::ImplTrait(_) => errors.push(
            ty,
            format_args!("an `impl Trait` {role} is generic: name one concrete type"),
        ),
        Type::Ptr(_) => errors.push(
            ty,
            format_args!("a raw pointer {role} means nothing in another process"),
        ),
        Type::Path(path) => {
            if path.qself.is_none()
                && path
                    .path
                    .segments
                    .first()
                    .is_some_and(|s| s.ident == "Self")
            {
                errors.push(
                    ty,
                    format_args!(
                        "`Self` is the worker's state type, which the host does not know; \
                         name the {role}'s type"
                    ),
                );
            }
            for segment in &path.path.segments {
                if let syn::PathArguments::AngleBracketed(generic) = &segment.arguments {
                    for arg in &generic.args {
                        if let syn::GenericArgument::Type(inner) = arg {
                            check_type(inner, role, errors);
                        }
                    }
                }
            }
        }
        Type::Tuple(tuple) => tuple.elems.iter().for_each(|t| check_type(t, role, errors)),
        Type::Array(array) => check_type(&array.elem, role, errors),
        Type::Slice(slice) => check_type(&slice.elem, role, errors),
        Type::Paren(paren) => check_type(&paren.elem, role, errors),
        Type::Group(group) => check_type(&group.elem, role, errors),
        _ => {}
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(tuple) if tuple.elems.is_empty())
}

/// The rule for fallible methods: the return type is a path whose last
/// segment is `Result` (`Result<T, E>`, `std::result::Result<T, E>`, or an
/// alias such as `io::Result<T>` or a crate's own `Result<T>`). Its success
/// and error types are then found through `ipc2::Fallible`, so aliases
/// resolve in the type system, not here.
fn is_named_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Result"),
        Type::Group(group) => is_named_result(&group.elem),
        Type::Paren(paren) => is_named_result(&paren.elem),
        _ => false,
    }
}

/// `set_value` → `SetValue`.
fn upper_camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_become_variant_names() {
        assert_eq!(upper_camel("get"), "Get");
        assert_eq!(upper_camel("set_value"), "SetValue");
        assert_eq!(upper_camel("_private_thing"), "PrivateThing");
        assert_eq!(upper_camel("get2"), "Get2");
    }

    #[test]
    fn result_is_recognised_by_its_last_segment() {
        let fallible: [Type; 4] = [
            syn::parse_quote!(Result<u32, E>),
            syn::parse_quote!(std::result::Result<u32, E>),
            syn::parse_quote!(io::Result<u32>),
            syn::parse_quote!(Result<u32>),
        ];
        assert!(fallible.iter().all(is_named_result));
        let plain: [Type; 3] = [
            syn::parse_quote!(Option<Result<u32, E>>),
            syn::parse_quote!(Outcome<u32>),
            syn::parse_quote!(()),
        ];
        assert!(!plain.iter().any(is_named_result));
    }
}
