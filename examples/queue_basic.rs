//! Lesson: passing data between processes through a `Queue` (Python's
//! `q.put([42, None, 'hello'])` in a child, `print(q.get())` in the parent).
//!
//! Anything `Serialize + Deserialize` travels: here a list of a small enum
//! standing in for Python's mixed-type list. (The task is not called `f`,
//! as in the tutorial: a task's name is a constant in its module, and would
//! clash with the `f` of `Display::fmt` below.)

use std::fmt;

use serde::{Deserialize, Serialize};

/// One element of a Python-style mixed list.
#[derive(Debug, Serialize, Deserialize)]
enum Item {
    Int(i64),
    None,
    Str(String),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Int(n) => write!(f, "{n}"),
            Item::None => f.write_str("None"),
            Item::Str(s) => write!(f, "'{s}'"),
        }
    }
}

#[mproc::process]
fn put_list(q: mproc::Queue<Vec<Item>>) {
    q.put(vec![Item::Int(42), Item::None, Item::Str("hello".into())])
        .expect("put");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = mproc::Queue::new()?;
    let p = mproc::spawn(put_list, q.clone())?;
    let items = q.get()?;
    let shown: Vec<String> = items.iter().map(Item::to_string).collect();
    println!("[{}]", shown.join(", ")); // prints "[42, None, 'hello']"
    p.join()?;
    Ok(())
}
