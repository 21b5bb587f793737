#[mproc::process]
unsafe fn peek(addr: usize) -> u8 {
    addr as u8
}

fn main() {}
