//! Abuse: floods, too many streams, clients that never read, bad logins,
//! while a well-behaved client keeps chatting.
