//! Lesson: named shared memory, as in the examples of Python's
//! `multiprocessing.shared_memory` documentation. A block of 10 bytes
//! written through one handle and read through another; a `ShareableList`
//! whose items change type; and a `SharedMemoryManager` whose list two
//! processes fill, each its half, and which unlinks it at the end.

use std::error::Error;

use mproc::{ShareableList, ShareableValue, SharedMemory, SharedMemoryManager};

/// Squares items `start..stop` of the list named `name`.
#[mproc::process]
fn square(name: String, start: usize, stop: usize) {
    let list = ShareableList::open(&name).expect("open the list");
    for i in start..stop {
        if let Ok(ShareableValue::Int(n)) = list.get(i) {
            list.set(i, n * n).expect("an int fits its slot");
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    // shm_a = SharedMemory(create=True, size=10)
    let shm_a = SharedMemory::create(None, 10)?;
    println!("len(buffer) = {}", shm_a.size());
    shm_a.write_at(0, &[22, 33, 44, 55])?; // several bytes at once
    shm_a.write_at(4, &[100])?; // one byte
    // Attach to the existing block by its name.
    let shm_b = SharedMemory::open(shm_a.name())?;
    let mut five = [0u8; 5];
    shm_b.read_at(0, &mut five)?;
    println!("shm_b.buf[:5] = {five:?}");
    shm_b.write_at(0, b"howdy")?;
    shm_a.read_at(0, &mut five)?;
    println!("shm_a.buf[:5] = {:?}", String::from_utf8_lossy(&five));
    shm_b.close();
    shm_a.unlink()?; // once, by the creator

    let a = ShareableList::create(
        None,
        &[
            "howdy".into(),
            b"HoWdY".as_slice().into(),
            (-273.154).into(),
            100i64.into(),
            ShareableValue::None,
            true.into(),
            42i64.into(),
        ],
    )?;
    println!("a[2] = {:?}", a.get(2)?);
    a.set(2, -78.5)?;
    println!("a[2] = {:?}", a.get(2)?);
    a.set(2, "dry ice")?; // changing the type is allowed
    println!("a[2] = {:?}", a.get(2)?);
    if let Err(e) = a.set(2, "larger than previously allocated storage space") {
        println!("a[2] = 'larger ...' -> {e}");
    }
    println!("a[2] = {:?}, len(a) = {}", a.get(2)?, a.len());
    a.shm().unlink()?;

    let smm = SharedMemoryManager::new();
    smm.start()?;
    let items: Vec<ShareableValue> = (1..=8i64).map(Into::into).collect();
    let sl = smm.shareable_list(&items)?;
    let halves = [(0, 4), (4, 8)];
    let workers: Vec<_> = halves
        .iter()
        .map(|&(start, stop)| mproc::spawn(square, (sl.name().to_owned(), start, stop)))
        .collect::<Result<_, _>>()?;
    for w in workers {
        w.join()?;
    }
    let total: i64 = sl
        .to_vec()?
        .iter()
        .map(|v| match v {
            ShareableValue::Int(n) => *n,
            _ => 0,
        })
        .sum();
    println!("sum of squares = {total}");
    let name = sl.name().to_owned();
    drop(sl);
    smm.shutdown(); // unlinks every block the manager made
    match ShareableList::open(&name) {
        Err(e) => println!("after shutdown, opening the list: {e}"),
        Ok(_) => println!("after shutdown, the list still opens"),
    }
    Ok(())
}
