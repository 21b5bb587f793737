//! Lesson: a `Pipe` between parent and child. `Pipe::new()` gives the two
//! ends of a duplex pipe; the child sends on its end and closes it (drops
//! it), the parent receives, then sees the end of the stream (Python's
//! `EOFError`) once no sending end is left.

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Item {
    Int(i64),
    None,
    Str(String),
}

#[mproc::process]
fn send_list(conn: mproc::Connection<Vec<Item>>) {
    conn.send(&vec![Item::Int(42), Item::None, Item::Str("hello".into())])
        .expect("send");
    // Its reply comes back on the same (duplex) connection.
    let reply = conn.recv().expect("recv");
    println!("child got back: {reply:?}");
    // `conn` is dropped here: the parent's next recv() is Closed.
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (parent_conn, child_conn) = mproc::Pipe::new()?;
    let p = mproc::spawn(send_list, child_conn)?;
    let items = parent_conn.recv()?;
    println!("parent got: {items:?}");
    parent_conn.send(&vec![Item::Str("thanks".into())])?;
    p.join()?;
    match parent_conn.recv() {
        Err(mproc::RecvError::Closed) => println!("the child closed its end: no more messages"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
