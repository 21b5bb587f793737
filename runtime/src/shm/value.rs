//! `Value<T>` (with a lock) and `RawValue<T>` (without): one `T` in shared
//! memory.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::size_of;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use serde::{Deserialize, Serialize};

use super::mutex::{LockResult, OwnerDied, SharedMutex, lock_result, self_deadlock};
use super::segment::{Kind, Page, Shm};
use super::{data_body_len, data_offset, layout_meta, read_shared, write_shared};
use crate::sys::Locked;
use crate::wait::Wait;

#[repr(C)]
pub(crate) struct ValuePage<T> {
    mutex: SharedMutex,
    _data: PhantomData<fn() -> T>,
}

// SAFETY: a zeroed mutex is an unlocked one; the data after the page is
// reached only through raw pointers.
unsafe impl<T: Pod> Page for ValuePage<T> {
    const KIND: Kind = Kind::Value;

    fn keep_mapped(&self) -> bool {
        self.mutex.held_in_this_process()
    }

    fn body_len(meta: &[u64; 4]) -> Option<usize> {
        data_body_len::<T>(size_of::<Self>(), meta)
    }
}

/// One `T` in shared memory, with its own robust lock, like Python's
/// `multiprocessing.Value`.
///
/// [`lock`](Self::lock) gives a guard that dereferences to the value for
/// compound updates (`*v.lock()? += 1` is atomic across processes);
/// [`get`](Self::get) and [`set`](Self::set) take the lock for one access.
/// If a process dies holding the lock, the next [`lock`](Self::lock) returns
/// [`OwnerDied`]; `get` and `set` carry on regardless.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn add(v: mproc::Value<i64>, n: i64) {
///     for _ in 0..n {
///         *v.lock().unwrap() += 1;
///     }
/// }
///
/// let v = mproc::Value::new(0_i64).unwrap();
/// let ps: Vec<_> = (0..2).map(|_| mproc::spawn(add, (v.clone(), 1000)).unwrap()).collect();
/// for p in ps {
///     p.join().unwrap();
/// }
/// assert_eq!(v.get(), 2000);
/// ```
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct Value<T: Pod> {
    shm: Shm<ValuePage<T>>,
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            shm: self.shm.clone(),
        }
    }
}

impl<T: Pod> Value<T> {
    /// A new shared value holding `value`.
    ///
    /// # Errors
    /// If `T` is aligned to more than a page, or the operating system
    /// refuses the shared memory.
    ///
    /// # Examples
    /// ```
    /// let v = mproc::Value::new([1.0_f64, 2.0, 3.0]).unwrap();
    /// assert_eq!(v.get()[2], 3.0);
    /// ```
    pub fn new(value: T) -> io::Result<Value<T>> {
        let v = Value {
            shm: Shm::<ValuePage<T>>::create(layout_meta::<T>(1))?,
        };
        // SAFETY: in bounds and aligned (see `data`), and not shared yet.
        unsafe { v.data().write(value) };
        Ok(v)
    }

    fn data(&self) -> *mut T {
        let offset = data_offset::<T>(size_of::<ValuePage<T>>());
        self.shm.segment().ptr_at(offset, size_of::<T>()).cast()
    }

    fn guard(&self) -> ValueGuard<'_, T> {
        ValueGuard {
            value: self,
            _not_send: PhantomData,
        }
    }

    /// Locks the value and gives access to it until the guard is dropped.
    ///
    /// # Errors
    /// [`OwnerDied`] (holding the guard) if a process died holding the lock;
    /// the value may be half-updated.
    ///
    /// # Panics
    /// If the calling thread already holds the lock.
    ///
    /// # Examples
    /// ```
    /// let v = mproc::Value::new(1_u32).unwrap();
    /// *v.lock().unwrap() *= 10;
    /// assert_eq!(v.get(), 10);
    /// ```
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        let got = self.shm.page().mutex.lock(&Wait::Forever);
        if got == Locked::ByCaller {
            self_deadlock("this Value's lock");
        }
        match lock_result(got, || self.guard()) {
            Ok(Some(g)) => Ok(g),
            Ok(None) => unreachable!("an untimed lock always ends locked"),
            Err(e) => Err(e),
        }
    }

    /// A copy of the value, read under the lock.
    ///
    /// # Panics
    /// If the calling thread holds the lock.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(mproc::Value::new(7_u8).unwrap().get(), 7);
    /// ```
    pub fn get(&self) -> T {
        *self.lock().unwrap_or_else(OwnerDied::into_inner)
    }

    /// Replaces the value, under the lock.
    ///
    /// # Panics
    /// If the calling thread holds the lock.
    ///
    /// # Examples
    /// ```
    /// let v = mproc::Value::new(0.0_f32).unwrap();
    /// v.set(2.5);
    /// assert_eq!(v.get(), 2.5);
    /// ```
    pub fn set(&self, value: T) {
        *self.lock().unwrap_or_else(OwnerDied::into_inner) = value;
    }
}

impl<T: Pod> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("type", &std::any::type_name::<T>())
            .field("segment", &self.shm)
            .finish()
    }
}

/// Access to a locked [`Value`]; dereferences to the `T`. Releases the lock
/// when dropped; not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    value: &'a Value<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: in bounds and aligned; we hold the lock, so no other
        // handle in any process touches the value until the guard drops.
        unsafe { &*self.value.data() }
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique
        // within this process too.
        unsafe { &mut *self.value.data() }
    }
}

impl<T: Pod> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.value.shm.page().mutex.unlock();
    }
}

impl<T: Pod> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueGuard").finish_non_exhaustive()
    }
}

#[repr(C)]
pub(crate) struct RawValuePage<T> {
    _data: PhantomData<fn() -> T>,
}

// SAFETY: an empty page; the data after it is reached only through raw
// pointers and atomic or volatile accesses.
unsafe impl<T: Pod> Page for RawValuePage<T> {
    const KIND: Kind = Kind::RawValue;

    fn body_len(meta: &[u64; 4]) -> Option<usize> {
        data_body_len::<T>(0, meta)
    }
}

/// One `T` in shared memory without a lock, like Python's
/// `multiprocessing.RawValue`.
///
/// [`get`](Self::get) and [`set`](Self::set) are single atomic accesses for
/// types of 1, 2, 4 or 8 bytes (naturally aligned); larger values can be
/// seen half-written while another process writes them. Use [`Value`] for
/// read-modify-write updates.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn store(v: mproc::RawValue<u64>) {
///     v.set(99);
/// }
///
/// let v = mproc::RawValue::new(0_u64).unwrap();
/// mproc::spawn(store, v.clone()).unwrap().join().unwrap();
/// assert_eq!(v.get(), 99);
/// ```
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct RawValue<T: Pod> {
    shm: Shm<RawValuePage<T>>,
}

impl<T: Pod> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            shm: self.shm.clone(),
        }
    }
}

impl<T: Pod> RawValue<T> {
    /// A new shared value holding `value`.
    ///
    /// # Errors
    /// If `T` is aligned to more than a page, or the operating system
    /// refuses the shared memory.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(mproc::RawValue::new(-3_i16).unwrap().get(), -3);
    /// ```
    pub fn new(value: T) -> io::Result<RawValue<T>> {
        let v = RawValue {
            shm: Shm::create(layout_meta::<T>(1))?,
        };
        v.set(value);
        Ok(v)
    }

    fn data(&self) -> *mut T {
        let offset = data_offset::<T>(size_of::<RawValuePage<T>>());
        self.shm.segment().ptr_at(offset, size_of::<T>()).cast()
    }

    /// The value now.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(mproc::RawValue::new(5_u32).unwrap().get(), 5);
    /// ```
    pub fn get(&self) -> T {
        // SAFETY: `data` is in bounds and aligned for T.
        unsafe { read_shared(self.data()) }
    }

    /// Replaces the value.
    ///
    /// # Examples
    /// ```
    /// let v = mproc::RawValue::new(false as u8).unwrap();
    /// v.set(1);
    /// assert_eq!(v.get(), 1);
    /// ```
    pub fn set(&self, value: T) {
        // SAFETY: `data` is in bounds and aligned for T.
        unsafe { write_shared(self.data(), value) }
    }
}

impl<T: Pod> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("type", &std::any::type_name::<T>())
            .field("segment", &self.shm)
            .finish()
    }
}
