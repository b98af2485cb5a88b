#[ipc2::service]
trait Store {
    fn set(&mut self, key: String, value: String);
}

fn main() {}
