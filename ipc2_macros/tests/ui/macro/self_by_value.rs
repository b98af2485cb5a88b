#[ipc2::service]
trait Store {
    fn get(self, key: String) -> Option<String>;
}

fn main() {}
