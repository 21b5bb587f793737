//! Lesson: a shared `Array` filled in parallel. Four processes each square
//! their quarter of the indices; a shared `Value` takes a float, as in
//! Python's `Value('d', ...)` / `Array('i', ...)` example.

use std::error::Error;

#[mproc::process]
fn fill(squares: mproc::Array<u64>, part: usize, parts: usize) {
    let len = squares.len();
    let mut slots = squares.lock().unwrap_or_else(mproc::OwnerDied::into_inner);
    for i in part * len / parts..(part + 1) * len / parts {
        slots[i] = (i * i) as u64;
    }
}

#[mproc::process]
fn set_pi(num: mproc::Value<f64>) {
    num.set(std::f64::consts::PI);
}

fn main() -> Result<(), Box<dyn Error>> {
    let squares = mproc::Array::<u64>::new(16)?;
    let num = mproc::Value::new(0.0_f64)?;
    let mut processes = Vec::new();
    for part in 0..4 {
        processes.push(mproc::spawn(fill, (squares.clone(), part, 4))?);
    }
    let pi = mproc::spawn(set_pi, num.clone())?;
    for p in processes {
        p.join()?;
    }
    pi.join()?;
    println!("{:.7}", num.get());
    println!("{:?}", squares.to_vec());
    Ok(())
}
