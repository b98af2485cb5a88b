#[ipc2::service]
trait Store {
    fn serve(port: u16);
    fn new(key: String);
    fn with_timeout(ms: u64);
}

fn main() {}
