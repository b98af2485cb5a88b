pub struct Image {
    pub pixels: Vec<u8>,
}

#[ipc2::service]
trait Imaging {
    fn resize(image: Image, width: u32) -> u64;
}

fn main() {}
