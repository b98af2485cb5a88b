#[ipc2::service]
trait Store {
    #[ipc2(oneway)]
    fn set(key: String, value: String) -> bool;
    #[ipc2(one_way)]
    fn touch(key: String);
}

fn main() {}
