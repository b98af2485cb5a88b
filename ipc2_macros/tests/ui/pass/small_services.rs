//! Services at the edges: one method (every reply is that method's), no
//! method at all, and argument types whose names the generated code could
//! have taken (`S`, `State`, `Transport`). Warnings are errors here.
#![deny(warnings)]

#[derive(serde::Serialize, serde::Deserialize)]
pub struct S(u8);
#[derive(serde::Serialize, serde::Deserialize)]
pub struct State(u8);
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Transport(u8);

/// One method.
#[ipc2::service]
pub trait Echo {
    /// Gives back what it gets.
    fn echo(s: S, state: State, transport: Transport, runner: u8, reply: u8) -> (S, State);
}

/// No method: a service that does nothing, but still serves.
#[ipc2::service]
pub trait Nothing {}

struct Echoer;

impl Echo for Echoer {
    fn echo(&self, s: S, state: State, _: Transport, _: u8, _: u8) -> (S, State) {
        (s, state)
    }
}

struct Idle;

impl Nothing for Idle {}

#[allow(dead_code)]
async fn call(echo: EchoClient, _nothing: NothingClient) {
    let _: Result<(S, State), ipc2::host::Error> =
        echo.echo(S(1), State(2), Transport(3), 4, 5).await;
}

fn main() {
    let _ = Echoer.serve();
    let _ = Idle.serve();
}
