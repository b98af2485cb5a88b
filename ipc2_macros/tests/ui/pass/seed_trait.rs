// The norpc seed's service, as the seed writes it.
use bytes::Bytes;

#[ipc2::service]
trait YourService {
    fn get(key: String) -> Option<Bytes>;
    fn set(key: String, val: Bytes);
}

struct Store;

impl YourService for Store {
    fn get(&self, _key: String) -> Option<Bytes> {
        None
    }
    fn set(&self, _key: String, _val: Bytes) {}
}

fn main() {
    let _request = YourServiceRequest::Set {
        key: "k".into(),
        val: Bytes::from_static(b"v"),
    };
    let _serve = Store.serve();
    let _client: Option<YourServiceClient> = None;
}
