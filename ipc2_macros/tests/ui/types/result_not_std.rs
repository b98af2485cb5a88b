/// A type of the user's own that happens to be called `Result`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Result {
    pub score: u32,
}

#[ipc2::service]
trait Judge {
    fn judge(entry: String) -> Result;
}

fn main() {}
