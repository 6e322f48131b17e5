use slab::Slab;

/// Buffers frames for multiple streams.
#[derive(Debug)]
pub struct Buffer<T> {
    slab: Slab<Slot<T>>,
}

/// A sequence of frames in a `Buffer`
#[derive(Debug)]
pub struct Deque {
    indices: Option<Indices>,
}

/// Tracks the head & tail for a sequence of frames in a `Buffer`.
#[derive(Debug, Default, Copy, Clone)]
struct Indices {
    head: usize,
    tail: usize,
}

#[derive(Debug)]
struct Slot<T> {
    value: T,
    next: Option<usize>,
}

impl<T> Buffer<T> {
    pub fn new() -> Self {
        Buffer { slab: Slab::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
}

impl Deque {
    pub fn new() -> Self {
        Deque { indices: None }
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_none()
    }

    pub fn push_back<T>(&mut self, buf: &mut Buffer<T>, value: T) {
        let key = buf.slab.insert(Slot { value, next: None });

        match self.indices {
            Some(ref mut idxs) => {
                buf.slab[idxs.tail].next = Some(key);
                idxs.tail = key;
            }
            None => {
                self.indices = Some(Indices {
                    head: key,
                    tail: key,
                });
            }
        }
    }

    pub fn push_front<T>(&mut self, buf: &mut Buffer<T>, value: T) {
        let key = buf.slab.insert(Slot { value, next: None });

        match self.indices {
            Some(ref mut idxs) => {
                buf.slab[key].next = Some(idxs.head);
                idxs.head = key;
            }
            None => {
                self.indices = Some(Indices {
                    head: key,
                    tail: key,
                });
            }
        }
    }

    pub fn pop_front<T>(&mut self, buf: &mut Buffer<T>) -> Option<T> {
        match self.indices {
            Some(mut idxs) => {
                let mut slot = buf.slab.remove(idxs.head);
                // Patched: frames are buffered only briefly, and an idle
                // connection keeps no room for them (see `store.rs`).
                super::store::release_if_empty(&mut buf.slab);

                if idxs.head == idxs.tail {
                    assert!(slot.next.is_none());
                    self.indices = None;
                } else {
                    idxs.head = slot.next.take().unwrap();
                    self.indices = Some(idxs);
                }

                Some(slot.value)
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod release_tests {
    use super::{Buffer, Deque};

    #[test]
    fn a_drained_buffer_gives_its_memory_back() {
        let mut buf = Buffer::new();
        let (mut a, mut b) = (Deque::new(), Deque::new());
        a.push_back(&mut buf, 1);
        b.push_back(&mut buf, 2);
        a.push_back(&mut buf, 3);
        assert_eq!(a.pop_front(&mut buf), Some(1));
        assert!(buf.slab.capacity() > 0, "frames are still buffered");
        assert_eq!(b.pop_front(&mut buf), Some(2));
        assert_eq!(a.pop_front(&mut buf), Some(3));
        assert!(buf.is_empty());
        assert_eq!(buf.slab.capacity(), 0);
        assert_eq!(a.pop_front(&mut buf), None);
        b.push_front(&mut buf, 4);
        assert_eq!(b.pop_front(&mut buf), Some(4));
        assert_eq!(buf.slab.capacity(), 0);
    }
}
