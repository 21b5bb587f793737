//! Lesson: a task with several arguments of different types.
//!
//! Python: `Process(target=f, args=('bob', 30, ['a', 'b']))`. In mproc the
//! arguments are one tuple, checked by the compiler against the function.

#[mproc::process]
fn describe(name: String, age: u32, tags: Vec<String>) -> String {
    format!("{name} is {age} and likes {}", tags.join(", "))
}

fn main() -> Result<(), mproc::ProcessError> {
    let p = mproc::spawn(
        describe,
        ("bob".into(), 30, vec!["tea".into(), "rust".into()]),
    )?;
    println!("{}", p.join()?);
    Ok(())
}
