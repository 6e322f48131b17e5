//! A stream's bounded queue: one sender, one receiver, and no memory while
//! it is empty.
//!
//! An open stream waits far more than it receives, and there may be tens of
//! thousands of them. Tokio's `mpsc` allocates its first block of 32 slots
//! (1.5 KiB of frames) with the channel and keeps it; this queue holds its
//! frames in a `VecDeque` that is allocated on the first push and freed
//! again whenever the receiver drains it, so an idle stream's queue costs
//! its small shared header only.
//!
//! A queue may be bounded by bytes as well as items ([`Weigh`]): a
//! catch-up of large messages holds no more than its byte budget.
//!
//! The hub pushes with `try_send` (a full queue means a slow consumer); a
//! catch-up task waits for room (`wait_for_room`, `send`) and watches
//! whether the receiver takes anything at all (`taken`).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// What an item weighs against a queue's byte budget.
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// A queue holding at most `capacity` items.
pub fn queue<T: Weigh>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    bounded(capacity, usize::MAX)
}

/// A queue holding at most `capacity` items weighing at most `max_bytes`
/// together; a single heavier item still goes into an empty queue.
pub fn bounded<T: Weigh>(capacity: usize, max_bytes: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        capacity,
        max_bytes,
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: 0,
            taken: 0,
            receiver: None,
            sender: None,
            sender_alive: true,
            receiver_alive: true,
        }),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    capacity: usize,
    max_bytes: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    /// What `items` weigh together.
    bytes: usize,
    /// Items the receiver has taken, ever.
    taken: u64,
    /// The receiver's task, waiting for an item.
    receiver: Option<Waker>,
    /// The sender's task, waiting for room.
    sender: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; never turn a poisoned one
        // into more panics.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T: Weigh> Shared<T> {
    fn has_room_for(&self, state: &State<T>, item: &T) -> bool {
        state.items.is_empty()
            || (state.items.len() < self.capacity
                && state.bytes.saturating_add(item.weight()) <= self.max_bytes)
    }

    /// Queues an item there is room for, and wakes the receiver.
    fn push(&self, mut state: MutexGuard<'_, State<T>>, item: T) {
        state.bytes += item.weight();
        state.items.push_back(item);
        let receiver = state.receiver.take();
        drop(state);
        if let Some(receiver) = receiver {
            receiver.wake();
        }
    }
}

/// Why `try_send` gave the item back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue holds `capacity` items.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// The sending half. There is only one: dropping it ends the queue once the
/// receiver has taken what is in it.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T: Weigh> Sender<T> {
    /// How many items the queue holds at most.
    pub fn max_capacity(&self) -> usize {
        self.shared.capacity
    }

    /// How many bytes the queue holds at most (but a single item).
    pub fn max_bytes(&self) -> usize {
        self.shared.max_bytes
    }

    /// How many items are waiting.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `item` if there is room, without waiting.
    ///
    /// # Errors
    /// Gives the item back when the queue is full or the receiver is gone.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let state = self.shared.lock();
        if !state.receiver_alive {
            return Err(TrySendError::Closed(item));
        }
        if !self.shared.has_room_for(&state, &item) {
            return Err(TrySendError::Full(item));
        }
        self.shared.push(state, item);
        Ok(())
    }

    /// Waits until at most `items` items weighing at most `bytes` are
    /// queued. Returns false once the receiver is gone.
    pub async fn wait_for_room(&self, items: usize, bytes: usize) -> bool {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if !state.receiver_alive {
                return Poll::Ready(false);
            }
            if state.items.len() <= items && state.bytes <= bytes {
                return Poll::Ready(true);
            }
            set_waker(&mut state.sender, cx);
            Poll::Pending
        })
        .await
    }

    /// How many items the receiver has taken so far: whether it makes any
    /// progress at all.
    pub fn taken(&self) -> u64 {
        self.shared.lock().taken
    }

    /// Queues `item`, waiting for room.
    ///
    /// # Errors
    /// Gives the item back when the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            let taken = item.take().expect("polled again after it finished");
            if !state.receiver_alive {
                return Poll::Ready(Err(taken));
            }
            if !self.shared.has_room_for(&state, &taken) {
                item = Some(taken);
                set_waker(&mut state.sender, cx);
                return Poll::Pending;
            }
            self.shared.push(state, taken);
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.sender_alive = false;
        let receiver = state.receiver.take();
        drop(state);
        if let Some(receiver) = receiver {
            receiver.wake();
        }
    }
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T: Weigh> Receiver<T> {
    /// The next item; `None` once the sender is gone and the queue empty.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        let Some(item) = state.items.pop_front() else {
            if !state.sender_alive {
                return Poll::Ready(None);
            }
            set_waker(&mut state.receiver, cx);
            return Poll::Pending;
        };
        state.bytes -= item.weight();
        state.taken += 1;
        if state.items.is_empty() {
            // Drained: give the memory back (an idle stream holds none).
            state.items = VecDeque::new();
        }
        let sender = state.sender.take();
        drop(state);
        if let Some(sender) = sender {
            sender.wake();
        }
        Poll::Ready(Some(item))
    }

    /// How much the queue has allocated for items, in items (for tests).
    #[cfg(test)]
    fn allocated(&self) -> usize {
        self.shared.lock().items.capacity()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        let items = std::mem::take(&mut state.items);
        let sender = state.sender.take();
        drop(state);
        // Dropped outside the lock: items may be anything.
        drop(items);
        if let Some(sender) = sender {
            sender.wake();
        }
    }
}

fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future as _;
    use std::pin::pin;

    use super::*;
    use crate::test_support::WakeCounter;

    /// In these tests an item weighs its value.
    impl Weigh for i32 {
        fn weight(&self) -> usize {
            self.unsigned_abs() as usize
        }
    }

    #[test]
    fn items_come_out_in_order_and_a_full_queue_refuses_more() {
        let (tx, mut rx) = queue(2);
        let (_, waker) = WakeCounter::new();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(tx.try_send(3), Ok(()));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(3)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_an_item_and_by_the_end() {
        let (tx, mut rx) = queue(4);
        let (woken, waker) = WakeCounter::new();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        tx.try_send(7).unwrap();
        assert_eq!(woken.wakes(), 1);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(7)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        tx.try_send(8).unwrap();
        drop(tx);
        assert_eq!(woken.wakes(), 2);
        // What was queued before the end still comes out.
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(8)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_drained_queue_holds_no_memory() {
        let (tx, mut rx) = queue(100);
        let (_, waker) = WakeCounter::new();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(rx.allocated(), 0);
        for i in 0..10 {
            tx.try_send(i).unwrap();
        }
        assert!(rx.allocated() >= 10);
        for i in 0..9 {
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(i)));
        }
        assert!(rx.allocated() > 0, "an item is still queued");
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(9)));
        assert_eq!(rx.allocated(), 0);
    }

    #[test]
    fn send_waits_for_room_and_fails_once_the_receiver_is_gone() {
        let (tx, mut rx) = queue(1);
        let (sender_woken, sender_waker) = WakeCounter::new();
        let mut sender_cx = Context::from_waker(&sender_waker);
        let (_, receiver_waker) = WakeCounter::new();
        let mut receiver_cx = Context::from_waker(&receiver_waker);

        assert_eq!(pin!(tx.send(1)).poll(&mut sender_cx), Poll::Ready(Ok(())));
        let mut second = pin!(tx.send(2));
        assert_eq!(second.as_mut().poll(&mut sender_cx), Poll::Pending);
        assert_eq!(rx.poll_recv(&mut receiver_cx), Poll::Ready(Some(1)));
        assert_eq!(sender_woken.wakes(), 1, "room was made");
        assert_eq!(second.as_mut().poll(&mut sender_cx), Poll::Ready(Ok(())));

        let mut third = pin!(tx.send(3));
        assert_eq!(third.as_mut().poll(&mut sender_cx), Poll::Pending);
        drop(rx);
        assert_eq!(sender_woken.wakes(), 2, "the receiver went away");
        assert_eq!(third.as_mut().poll(&mut sender_cx), Poll::Ready(Err(3)));
        assert_eq!(tx.try_send(4), Err(TrySendError::Closed(4)));
    }

    #[test]
    fn a_byte_budget_bounds_the_queue_but_one_heavy_item_still_fits() {
        let (tx, mut rx) = bounded(10, 100);
        let (_, waker) = WakeCounter::new();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(tx.try_send(60), Ok(()));
        assert_eq!(tx.try_send(50), Err(TrySendError::Full(50)));
        assert_eq!(tx.try_send(40), Ok(()));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(60)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(40)));
        assert_eq!(tx.try_send(500), Ok(()), "alone, it may exceed the budget");
        assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
        assert_eq!(tx.taken(), 2);
    }

    #[test]
    fn waiting_for_room_ends_when_the_receiver_drains_or_goes() {
        let (tx, mut rx) = bounded(10, 1000);
        let (woken, waker) = WakeCounter::new();
        let mut cx = Context::from_waker(&waker);
        for item in [100, 200, 300] {
            tx.try_send(item).unwrap();
        }
        let mut room = pin!(tx.wait_for_room(1, 300));
        assert_eq!(room.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(100)));
        assert_eq!(room.as_mut().poll(&mut cx), Poll::Pending, "two left");
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(200)));
        assert!(woken.wakes() >= 2);
        assert_eq!(room.as_mut().poll(&mut cx), Poll::Ready(true));

        let mut empty = pin!(tx.wait_for_room(0, 0));
        assert_eq!(empty.as_mut().poll(&mut cx), Poll::Pending);
        drop(rx);
        assert_eq!(empty.as_mut().poll(&mut cx), Poll::Ready(false));
    }
}
