#[ipc2::service]
trait Store {
    fn get<K: ToString>(key: K) -> Option<String>;
}

fn main() {}
