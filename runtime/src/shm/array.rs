//! `Array<T>` (with a lock) and `RawArray<T>` (without): a fixed-length
//! slice of `T` in shared memory.

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

/// An index past the end of a [`RawArray`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexOutOfBounds {
    /// The index asked for.
    pub index: usize,
    /// The array's length.
    pub len: usize,
}

impl fmt::Display for IndexOutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "index {} is out of bounds for a shared array of length {}",
            self.index, self.len
        )
    }
}

impl std::error::Error for IndexOutOfBounds {}

#[repr(C)]
pub(crate) struct ArrayPage<T> {
    mutex: SharedMutex,
    _data: PhantomData<fn() -> T>,
}

// SAFETY: a zeroed mutex is an unlocked one; the elements after the page
// are reached only through raw pointers.
unsafe impl<T: Pod> Page for ArrayPage<T> {
    const KIND: Kind = Kind::Array;

    fn keep_mapped(&self) -> bool {
        self.mutex.held_in_this_process()
    }

    fn body_len(meta: &[u64; 4]) -> Option<usize> {
        data_body_len::<T>(size_of::<Self>(), meta)
    }
}

/// A fixed-length array of `T` in shared memory, with its own robust lock,
/// like Python's `multiprocessing.Array`.
///
/// [`lock`](Self::lock) gives a guard that dereferences to `[T]`.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn fill(a: mproc::Array<u32>, from: usize, to: usize) {
///     let mut slots = a.lock().unwrap();
///     for i in from..to {
///         slots[i] = (i * i) as u32;
///     }
/// }
///
/// let a = mproc::Array::<u32>::new(8).unwrap();
/// let ps = [(0, 4), (4, 8)].map(|(f, t)| mproc::spawn(fill, (a.clone(), f, t)).unwrap());
/// for p in ps {
///     p.join().unwrap();
/// }
/// assert_eq!(a.to_vec(), [0, 1, 4, 9, 16, 25, 36, 49]);
/// ```
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct Array<T: Pod> {
    shm: Shm<ArrayPage<T>>,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            shm: self.shm.clone(),
        }
    }
}

impl<T: Pod> Array<T> {
    /// A shared array of `len` zeroed elements.
    ///
    /// # Errors
    /// If the size overflows, `T` is aligned to more than a page, or the
    /// operating system refuses the shared memory.
    ///
    /// # Examples
    /// ```
    /// let a = mproc::Array::<f64>::new(1024).unwrap();
    /// assert_eq!(a.len(), 1024);
    /// assert!(a.to_vec().iter().all(|&x| x == 0.0));
    /// ```
    pub fn new(len: usize) -> io::Result<Array<T>> {
        Ok(Array {
            shm: Shm::create(layout_meta::<T>(len))?,
        })
    }

    /// A shared array holding a copy of `items`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    ///
    /// # Examples
    /// ```
    /// let a = mproc::Array::from_slice(&[1_i32, 2, 3]).unwrap();
    /// assert_eq!(a.to_vec(), [1, 2, 3]);
    /// ```
    pub fn from_slice(items: &[T]) -> io::Result<Array<T>> {
        let a = Array::new(items.len())?;
        a.lock()
            .unwrap_or_else(OwnerDied::into_inner)
            .copy_from_slice(items);
        Ok(a)
    }

    /// The number of elements.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(mproc::Array::<u8>::new(3).unwrap().len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.shm.meta()[2] as usize
    }

    /// Whether the array has no elements.
    ///
    /// # Examples
    /// ```
    /// assert!(mproc::Array::<u8>::new(0).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn data(&self) -> *mut T {
        let offset = data_offset::<T>(size_of::<ArrayPage<T>>());
        let bytes = size_of::<T>() * self.len();
        self.shm.segment().ptr_at(offset, bytes).cast()
    }

    /// Locks the array and gives access to its elements until the guard is
    /// dropped.
    ///
    /// # Errors
    /// [`OwnerDied`] (holding the guard) if a process died holding the lock;
    /// the elements may be half-updated.
    ///
    /// # Panics
    /// If the calling thread already holds the lock.
    ///
    /// # Examples
    /// ```
    /// let a = mproc::Array::<i64>::new(4).unwrap();
    /// a.lock().unwrap()[3] = 7;
    /// assert_eq!(a.to_vec(), [0, 0, 0, 7]);
    /// ```
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        let got = self.shm.page().mutex.lock(&Wait::Forever);
        if got == Locked::ByCaller {
            self_deadlock("this Array's lock");
        }
        let guard = || ArrayGuard {
            array: self,
            _not_send: PhantomData,
        };
        match lock_result(got, guard) {
            Ok(Some(g)) => Ok(g),
            Ok(None) => unreachable!("an untimed lock always ends locked"),
            Err(e) => Err(e),
        }
    }

    /// A copy of the elements, read under the lock.
    ///
    /// # Panics
    /// If the calling thread holds the lock.
    ///
    /// # Examples
    /// ```
    /// let a = mproc::Array::from_slice(&[0.5_f32; 2]).unwrap();
    /// assert_eq!(a.to_vec(), [0.5, 0.5]);
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        self.lock().unwrap_or_else(OwnerDied::into_inner).to_vec()
    }
}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len())
            .field("segment", &self.shm)
            .finish()
    }
}

/// Access to a locked [`Array`]; dereferences to `[T]`. Releases the lock
/// when dropped; not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a Array<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements, in bounds and aligned; we hold the lock, so
        // no other handle in any process touches them until the guard drops.
        unsafe { std::slice::from_raw_parts(self.array.data(), self.array.len()) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique
        // within this process too.
        unsafe { std::slice::from_raw_parts_mut(self.array.data(), self.array.len()) }
    }
}

impl<T: Pod> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.array.shm.page().mutex.unlock();
    }
}

impl<T: Pod> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.array.len())
            .finish_non_exhaustive()
    }
}

#[repr(C)]
pub(crate) struct RawArrayPage<T> {
    _data: PhantomData<fn() -> T>,
}

// SAFETY: an empty page; the elements after it are reached only through raw
// pointers and atomic or volatile accesses.
unsafe impl<T: Pod> Page for RawArrayPage<T> {
    const KIND: Kind = Kind::RawArray;

    fn body_len(meta: &[u64; 4]) -> Option<usize> {
        data_body_len::<T>(0, meta)
    }
}

/// A fixed-length array of `T` in shared memory without a lock, like
/// Python's `multiprocessing.RawArray`.
///
/// Element accesses are single atomic accesses for types of 1, 2, 4 or 8
/// bytes (naturally aligned); larger elements can be seen half-written while
/// another process writes them.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn mark(a: mproc::RawArray<u8>, i: usize) {
///     a.set(i, 1).unwrap();
/// }
///
/// let a = mproc::RawArray::<u8>::new(3).unwrap();
/// mproc::spawn(mark, (a.clone(), 1)).unwrap().join().unwrap();
/// assert_eq!(a.to_vec(), [0, 1, 0]);
/// ```
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct RawArray<T: Pod> {
    shm: Shm<RawArrayPage<T>>,
}

impl<T: Pod> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            shm: self.shm.clone(),
        }
    }
}

impl<T: Pod> RawArray<T> {
    /// A shared array of `len` zeroed elements.
    ///
    /// # Errors
    /// If the size overflows, `T` is aligned to more than a page, or the
    /// operating system refuses the shared memory.
    ///
    /// # Examples
    /// ```
    /// let a = mproc::RawArray::<u16>::new(2).unwrap();
    /// assert_eq!(a.to_vec(), [0, 0]);
    /// ```
    pub fn new(len: usize) -> io::Result<RawArray<T>> {
        Ok(RawArray {
            shm: Shm::create(layout_meta::<T>(len))?,
        })
    }

    /// A shared array holding a copy of `items`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    ///
    /// # Examples
    /// ```
    /// let a = mproc::RawArray::from_slice(&[3_u64, 4]).unwrap();
    /// assert_eq!(a.get(1), Some(4));
    /// ```
    pub fn from_slice(items: &[T]) -> io::Result<RawArray<T>> {
        let a = RawArray::<T>::new(items.len())?;
        for (i, &item) in items.iter().enumerate() {
            // SAFETY: `i < len`, so in bounds and aligned.
            unsafe { write_shared(a.data().add(i), item) };
        }
        Ok(a)
    }

    /// The number of elements.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(mproc::RawArray::<u8>::new(5).unwrap().len(), 5);
    /// ```
    pub fn len(&self) -> usize {
        self.shm.meta()[2] as usize
    }

    /// Whether the array has no elements.
    ///
    /// # Examples
    /// ```
    /// assert!(!mproc::RawArray::<u8>::new(1).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn data(&self) -> *mut T {
        let offset = data_offset::<T>(size_of::<RawArrayPage<T>>());
        let bytes = size_of::<T>() * self.len();
        self.shm.segment().ptr_at(offset, bytes).cast()
    }

    /// Element `index`, or `None` past the end.
    ///
    /// # Examples
    /// ```
    /// let a = mproc::RawArray::from_slice(&[9_i8]).unwrap();
    /// assert_eq!(a.get(0), Some(9));
    /// assert_eq!(a.get(1), None);
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= self.len() {
            return None;
        }
        // SAFETY: `index < len`, so in bounds and aligned.
        Some(unsafe { read_shared(self.data().add(index)) })
    }

    /// Replaces element `index`.
    ///
    /// # Errors
    /// [`IndexOutOfBounds`] past the end; nothing is written.
    ///
    /// # Examples
    /// ```
    /// let a = mproc::RawArray::<u32>::new(2).unwrap();
    /// a.set(1, 5).unwrap();
    /// assert_eq!(a.set(2, 5), Err(mproc::IndexOutOfBounds { index: 2, len: 2 }));
    /// assert_eq!(a.to_vec(), [0, 5]);
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<(), IndexOutOfBounds> {
        let len = self.len();
        if index >= len {
            return Err(IndexOutOfBounds { index, len });
        }
        // SAFETY: `index < len`, so in bounds and aligned.
        unsafe { write_shared(self.data().add(index), value) };
        Ok(())
    }

    /// A copy of the elements, each read as [`get`](Self::get) reads it.
    ///
    /// # Examples
    /// ```
    /// let a = mproc::RawArray::from_slice(&[1_u8, 2]).unwrap();
    /// assert_eq!(a.to_vec(), vec![1, 2]);
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        let data = self.data();
        (0..self.len())
            // SAFETY: `i < len`, so in bounds and aligned.
            .map(|i| unsafe { read_shared(data.add(i)) })
            .collect()
    }
}

impl<T: Pod> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len())
            .field("segment", &self.shm)
            .finish()
    }
}
