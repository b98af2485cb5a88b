#[ipc2::service]
struct YourService {
    key: String,
}

fn main() {}
