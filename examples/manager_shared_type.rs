//! A user type shared through a manager with `#[mproc::shared]`: four
//! processes call its methods through the generated `BankAccountProxy`, and
//! an error the object returns comes back as that error.
//!
//! Run with `cargo run --example manager_shared_type`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct BankAccount {
    balance: i64,
    history: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
enum BankError {
    InsufficientFunds { balance: i64, wanted: i64 },
}

#[mproc::shared]
impl BankAccount {
    /// Constructors are not proxied (no `self`).
    fn with_balance(balance: i64) -> BankAccount {
        BankAccount {
            balance,
            history: vec![format!("opened with {balance}")],
        }
    }

    fn deposit(&mut self, who: String, amount: i64) -> i64 {
        self.balance += amount;
        self.history.push(format!("{who} +{amount}"));
        self.balance
    }

    fn withdraw(&mut self, amount: i64) -> Result<i64, BankError> {
        if amount > self.balance {
            return Err(BankError::InsufficientFunds {
                balance: self.balance,
                wanted: amount,
            });
        }
        self.balance -= amount;
        Ok(self.balance)
    }

    fn balance(&self) -> i64 {
        self.balance
    }

    fn history_len(&self) -> usize {
        self.history.len()
    }
}

#[mproc::process]
fn depositor(account: BankAccountProxy, times: i64) {
    let me = mproc::current_process().name().to_string();
    for _ in 0..times {
        account.deposit(me.clone(), 10).unwrap();
    }
}

fn main() -> Result<(), mproc::ManagerError> {
    let manager = mproc::Manager::start()?;
    let account = manager.share(BankAccount::with_balance(100))?;
    let children: Vec<_> = (0..4)
        .map(|_| mproc::spawn(depositor, (account.clone(), 25)).expect("start a process"))
        .collect();
    for child in children {
        child.join().expect("depositor finished");
    }
    println!(
        "balance after 4 x 25 deposits of 10: {}",
        account.balance()?
    );
    println!("history entries: {}", account.history_len()?);
    match account.withdraw(50)? {
        Ok(left) => println!("withdrew 50, {left} left"),
        Err(e) => println!("refused: {e:?}"),
    }
    match account.withdraw(10_000)? {
        Ok(left) => println!("withdrew 10000, {left} left"),
        Err(e) => println!("refused: {e:?}"),
    }
    manager.shutdown()?;
    match account.balance() {
        Ok(b) => println!("after shutdown: {b}"),
        Err(e) => println!("after shutdown: {e}"),
    }
    Ok(())
}
