//! The mention rule (src/mention.rs), through the crate's public API.

use proptest::prelude::*;

use chat_domain::{mentions, MessageText, Username, MAX_MENTIONS};

fn mentioned(text: &str) -> Vec<String> {
    mentions(&MessageText::parse(text.to_owned()).unwrap())
}

fn assert_mentions(cases: &[(&str, &[&str])]) {
    for (text, expected) in cases {
        assert_eq!(mentioned(text), *expected, "{text:?}");
    }
}

#[test]
fn a_mention_is_at_then_a_username() {
    assert_mentions(&[
        ("@alice", &["alice"]),
        ("hi @alice", &["alice"]),
        ("@alice hi", &["alice"]),
        ("@a.b", &["a.b"]),
        ("@bob-smith", &["bob-smith"]),
        ("@bob_smith", &["bob_smith"]),
        ("@alice_1", &["alice_1"]),
        ("@123", &["123"]),
    ]);
}

#[test]
fn trailing_dots_dashes_and_underscores_are_not_part_of_the_name() {
    assert_mentions(&[
        ("hi @alice.", &["alice"]),
        ("@alice...", &["alice"]),
        ("@bob_", &["bob"]),
        ("@bob-", &["bob"]),
        ("@bob._-", &["bob"]),
        ("@bob-smith.", &["bob-smith"]),
        ("@...", &[]),
        ("@ab_", &[]),
    ]);
}

#[test]
fn the_name_ends_at_the_first_character_a_username_may_not_hold() {
    assert_mentions(&[
        ("(@carol)", &["carol"]),
        ("@alice, @bob: hi", &["alice", "bob"]),
        ("@alice's idea", &["alice"]),
        ("@alice!", &["alice"]),
        ("@alice\n@bob", &["alice", "bob"]),
        ("@alice\t@bob", &["alice", "bob"]),
        ("[@alice](link)", &["alice"]),
        ("@alice/@bob", &["alice", "bob"]),
    ]);
}

#[test]
fn names_are_compared_case_insensitively_and_kept_once() {
    assert_mentions(&[
        ("@Alice @alice", &["alice"]),
        ("@ALICE", &["alice"]),
        ("@alice @alice. @alice_", &["alice"]),
        ("@carol @alice @Carol @bob", &["carol", "alice", "bob"]),
    ]);
}

#[test]
fn an_at_inside_a_word_is_not_a_mention() {
    assert_mentions(&[
        ("mail bob@example.com", &[]),
        ("x@alice", &[]),
        ("1@alice", &[]),
        ("a.@alice", &[]),
        ("a_@alice", &[]),
        ("a-@alice", &[]),
        ("@alice@example.com", &["alice"]),
        ("mail bob@example.com or @bob", &["bob"]),
    ]);
}

#[test]
fn an_at_after_another_character_starts_a_mention() {
    assert_mentions(&[
        ("@@alice", &["alice"]),
        ("@@@alice", &["alice"]),
        ("hi,@dave", &["dave"]),
        ("é@alice", &["alice"]),
        ("👍@alice", &["alice"]),
    ]);
}

#[test]
fn what_is_not_a_valid_username_mentions_no_one() {
    let too_long = format!("@{}", "x".repeat(Username::MAX_LEN + 1));
    let longest = "x".repeat(Username::MAX_LEN);
    assert_mentions(&[
        ("@", &[]),
        ("@ alice", &[]),
        ("hi @", &[]),
        ("@ab", &[]),
        ("@a", &[]),
        (&too_long, &[]),
        (&format!("@{longest}"), &[&longest]),
        (&format!("@{longest}."), &[&longest]),
        ("alice", &[]),
        ("＠alice", &[]),
    ]);
}

#[test]
fn usernames_are_ascii_so_other_letters_end_the_name() {
    assert_mentions(&[
        ("@bób", &[]),
        ("@zoë", &[]),
        ("@renée", &["ren"]),
        ("@алиса", &[]),
        ("@alice\u{301}", &["alice"]),
    ]);
}

#[test]
fn at_most_fifty_names_are_mentioned() {
    let names: Vec<String> = (0..60).map(|i| format!("user{i:02}")).collect();
    let text = names.iter().map(|n| format!("@{n}")).collect::<Vec<_>>();
    assert_eq!(mentioned(&text.join(" ")), names[..MAX_MENTIONS]);

    // Repeats do not count against the cap.
    let mut text = names[..MAX_MENTIONS - 1]
        .iter()
        .map(|n| format!("@{n} @{n} @{}", n.to_uppercase()))
        .collect::<Vec<_>>();
    text.push("@last @after".to_owned());
    let mut expected = names[..MAX_MENTIONS - 1].to_vec();
    expected.push("last".to_owned());
    assert_eq!(mentioned(&text.join(" ")), expected);
}

#[test]
fn the_longest_text_is_read_in_bounded_work() {
    let text = "@abc ".repeat(MessageText::MAX_CHARS / 5);
    assert_eq!(mentioned(&text), ["abc"]);
    let text = "@".repeat(MessageText::MAX_CHARS);
    assert_eq!(mentioned(&text), Vec::<String>::new());
    let text = format!("@{}", "a".repeat(MessageText::MAX_CHARS - 1));
    assert_eq!(mentioned(&text), Vec::<String>::new());
}

/// Texts rich in the characters that matter: `@`, the username
/// characters, their trailing ones, and others, ASCII or not.
fn texts() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.@ ,()'é👍\n-]{0,200}"
}

proptest! {
    #[test]
    fn every_key_is_a_username_key_written_after_an_at(text in texts()) {
        prop_assume!(MessageText::parse(text.clone()).is_ok());
        let keys = mentioned(&text);
        prop_assert!(keys.len() <= MAX_MENTIONS);
        let folded = text.to_ascii_lowercase();
        for (i, key) in keys.iter().enumerate() {
            let username = Username::parse(key);
            prop_assert!(username.is_ok(), "{:?} is no username", key);
            prop_assert_eq!(&username.unwrap().key(), key);
            prop_assert!(folded.contains(&format!("@{key}")), "{:?} in {:?}", key, text);
            prop_assert!(!keys[..i].contains(key), "{:?} twice", key);
        }
    }

    /// Names written as `@name` between separators are found, each once,
    /// in order: the rule's positive side.
    #[test]
    fn names_between_separators_are_all_found(
        names in proptest::collection::vec("[a-zA-Z0-9][a-zA-Z0-9_.-]{1,30}[a-zA-Z0-9]", 1..80),
        separators in proptest::collection::vec("[ ,:;!?()\n]{1,3}", 80),
    ) {
        let text: String = names
            .iter()
            .zip(&separators)
            .map(|(name, sep)| format!("@{name}{sep}"))
            .collect();
        let mut expected: Vec<String> = Vec::new();
        for name in &names {
            let key = name.to_ascii_lowercase();
            if !expected.contains(&key) && expected.len() < MAX_MENTIONS {
                expected.push(key);
            }
        }
        prop_assert_eq!(mentioned(&text), expected);
    }
}
