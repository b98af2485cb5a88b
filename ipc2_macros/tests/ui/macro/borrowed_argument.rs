#[ipc2::service]
trait Store {
    fn get(key: &str) -> Option<String>;
    fn keys() -> Vec<&'static str>;
}

fn main() {}
