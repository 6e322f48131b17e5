//! Properties of the pure parts of the server: the domain validators, the
//! token codec and the request handlers' input validation.
//!
//! Where `tests/api` checks one example of each rule end to end, these check
//! each rule over generated inputs: what is valid is accepted and kept as
//! sent, each kind of invalid input is rejected with INVALID_ARGUMENT (or
//! UNAUTHENTICATED, for tokens and logins) saying what was wrong, and no
//! input at all makes anything panic. The last group runs the fuzz target's
//! code (`fuzz/`) on stable, so CI covers it too.

use std::fmt::Debug;
use std::time::Duration;

use chat_server::auth::token::{self, Claims, TokenCodec};
use chat_server::domain::{
    ClientMsgId, MessageId, MessageText, Password, RoomId, RoomName, SessionId, Timestamp, UserId,
    Username,
};
use chat_server::error::Error;
use chat_server::pb;
use chat_server::service::requests::{self, ClientEvent, RequestKind};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::collection::vec;
use proptest::prelude::*;
use tonic::Code;
use unicode_normalization::UnicodeNormalization as _;
use uuid::Uuid;

/// The message of an INVALID_ARGUMENT error; fails on anything else.
/// Domain errors count as what the server answers for them.
fn invalid<T: Debug, E: Into<Error>>(result: Result<T, E>) -> String {
    match result.map_err(Into::into) {
        Err(error) => {
            assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
            error.to_string()
        }
        Ok(value) => panic!("accepted: {value:?}"),
    }
}

/// The message of an UNAUTHENTICATED error; fails on anything else.
fn unauthenticated<T: Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(error) => {
            assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
            error.to_string()
        }
        Ok(value) => panic!("accepted: {value:?}"),
    }
}

/// Any id, not only the UUIDv7s the server makes: clients may send any.
fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

/// Strings with no control characters, of 1 to `max` characters.
fn printable(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[^\\p{{Cc}}]{{1,{max}}}")).unwrap()
}

mod usernames {
    use super::*;

    fn is_username(value: &str) -> bool {
        (Username::MIN_LEN..=Username::MAX_LEN).contains(&value.len())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    }

    proptest! {
        #[test]
        fn valid_usernames_are_kept_as_sent_and_keyed_by_lower_case(
            name in "[A-Za-z0-9_.-]{3,32}"
        ) {
            let username = Username::parse(&name).unwrap();
            prop_assert_eq!(username.as_str(), name.as_str());
            prop_assert_eq!(username.key(), name.to_ascii_lowercase());
        }

        #[test]
        fn usernames_differing_only_in_case_share_a_key(name in "[A-Za-z0-9_.-]{3,32}") {
            let upper = Username::parse(&name.to_ascii_uppercase()).unwrap();
            let lower = Username::parse(&name.to_ascii_lowercase()).unwrap();
            prop_assert_eq!(upper.key(), lower.key());
        }

        #[test]
        fn usernames_of_the_wrong_length_are_rejected(
            name in prop_oneof!["[A-Za-z0-9_.-]{0,2}", "[A-Za-z0-9_.-]{33,100}"]
        ) {
            let message = invalid(Username::parse(&name));
            prop_assert!(message.starts_with("username must be 3 to 32 characters"), "{}", message);
        }

        #[test]
        fn usernames_with_any_other_character_are_rejected(
            before in "[A-Za-z0-9_.-]{1,12}",
            bad in any::<char>().prop_filter("outside the alphabet", |c| {
                !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            }),
            after in "[A-Za-z0-9_.-]{1,12}",
        ) {
            let message = invalid(Username::parse(&format!("{before}{bad}{after}")));
            prop_assert!(message.starts_with("username may only contain"), "{}", message);
            prop_assert!(message.ends_with(&format!("found {bad:?}")), "{}", message);
        }

        #[test]
        fn any_string_is_a_username_exactly_when_it_follows_the_rules(name in any::<String>()) {
            match Username::parse(&name) {
                Ok(username) => prop_assert!(is_username(username.as_str())),
                Err(error) => {
                    prop_assert!(!is_username(&name));
                    prop_assert!(invalid::<(), _>(Err(error)).starts_with("username"));
                }
            }
        }
    }
}

mod passwords {
    use super::*;

    proptest! {
        #[test]
        fn passwords_of_8_to_1024_characters_are_kept_and_never_printed(
            password in "(?s).{8,256}"
        ) {
            let parsed = Password::parse(password.clone()).unwrap();
            prop_assert_eq!(parsed.expose(), password.as_bytes());
            prop_assert_eq!(format!("{parsed:?}"), "Password(<redacted>)");
        }

        #[test]
        fn the_length_bounds_count_characters_not_bytes(
            len in 1_000_usize..1_100,
            c in prop::sample::select(vec!['p', 'é', '€', '🔑']),
        ) {
            let password = c.to_string().repeat(len);
            if len <= Password::MAX_CHARS {
                prop_assert!(Password::parse(password).is_ok());
            } else {
                let message = invalid(Password::parse(password));
                prop_assert_eq!(
                    message,
                    format!("password must be 8 to 1024 characters long, got {len}")
                );
            }
        }

        #[test]
        fn short_passwords_are_rejected(password in "(?s).{0,7}") {
            let message = invalid(Password::parse(password.clone()));
            prop_assert_eq!(
                message,
                format!(
                    "password must be 8 to 1024 characters long, got {}",
                    password.chars().count()
                )
            );
        }

        #[test]
        fn long_passwords_are_rejected(password in "(?s).{257,400}") {
            let password = password.repeat(4);
            let message = invalid(Password::parse(password));
            prop_assert!(message.starts_with("password must be 8 to 1024 characters long"));
        }

        #[test]
        fn any_string_is_a_password_exactly_when_its_length_fits(password in any::<String>()) {
            let fits = (Password::MIN_CHARS..=Password::MAX_CHARS).contains(&password.chars().count());
            prop_assert_eq!(Password::parse(password).is_ok(), fits);
        }
    }
}

mod room_names {
    use super::*;

    /// 1 to `max` characters, neither control nor invisible
    /// (Default_Ignorable_Code_Point, as the regex engine's own Unicode
    /// tables have it) characters nor, at either end, white space.
    fn trimmed_name(max: usize) -> impl Strategy<Value = String> {
        let inner = max.saturating_sub(2);
        let edge = "[^\\s\\p{Cc}\\p{Default_Ignorable_Code_Point}]";
        let middle = "[^\\p{Cc}\\p{Default_Ignorable_Code_Point}]";
        prop_oneof![
            proptest::string::string_regex(edge).unwrap(),
            proptest::string::string_regex(&format!("{edge}{middle}{{0,{inner}}}{edge}")).unwrap(),
        ]
    }

    /// What a name is stored as: NFKC, trimmed.
    fn normalized(value: &str) -> String {
        value.nfkc().collect::<String>().trim().to_owned()
    }

    /// Default_Ignorable_Code_Point, told by the TR39 skeleton, which
    /// drops exactly those characters.
    fn is_ignorable(c: char) -> bool {
        let text = c.to_string();
        let empty = unicode_security::skeleton(&text).next().is_none();
        empty
    }

    fn is_room_name(value: &str) -> bool {
        let name = normalized(value);
        !name.is_empty()
            && name.chars().count() <= RoomName::MAX_CHARS
            && !name
                .chars()
                .any(|c| c.is_control() || (is_ignorable(c) && c != '\u{FE0E}' && c != '\u{FE0F}'))
    }

    proptest! {
        #[test]
        fn valid_room_names_are_kept_trimmed(
            name in trimmed_name(64),
            before in "\\s{0,4}",
            after in "\\s{0,4}",
        ) {
            let sent = format!("{before}{name}{after}");
            prop_assume!(is_room_name(&sent));
            let parsed = RoomName::parse(&sent).unwrap();
            prop_assert_eq!(parsed.as_str().to_owned(), normalized(&name));
        }

        #[test]
        fn blank_room_names_are_rejected(name in "\\s{0,10}") {
            prop_assert_eq!(invalid(RoomName::parse(&name)), "room name must not be empty");
        }

        #[test]
        fn room_names_over_64_characters_are_rejected(name in "[a-zA-Z0-9éß]{65,100}") {
            let message = invalid(RoomName::parse(&name));
            prop_assert_eq!(
                message,
                format!("room name must be at most 64 characters, got {}", name.chars().count())
            );
        }

        #[test]
        fn room_names_with_control_characters_are_rejected(
            before in trimmed_name(20),
            control in "\\p{Cc}",
            after in trimmed_name(20),
        ) {
            let message = invalid(RoomName::parse(&format!("{before}{control}{after}")));
            prop_assert!(
                message.starts_with("room name must not contain control characters, found U+"),
                "{}",
                message
            );
        }

        #[test]
        fn room_names_with_invisible_or_bidi_characters_are_rejected(
            before in trimmed_name(20),
            hidden in "[\\u{200B}\\u{200D}\\u{2060}\\u{FEFF}\\u{202A}-\\u{202E}\\u{2066}-\\u{2069}\\u{E0020}-\\u{E007F}]",
            after in trimmed_name(20),
        ) {
            let message = invalid(RoomName::parse(&format!("{before}{hidden}{after}")));
            prop_assert!(
                message.starts_with("room name must not contain invisible characters")
                    || message.starts_with("room name must not contain bidirectional-control characters"),
                "{}",
                message
            );
        }

        #[test]
        fn any_string_is_a_room_name_exactly_when_it_follows_the_rules(name in any::<String>()) {
            match RoomName::parse(&name) {
                Ok(parsed) => {
                    prop_assert!(is_room_name(&name));
                    prop_assert_eq!(parsed.as_str().to_owned(), normalized(&name));
                }
                Err(error) => {
                    prop_assert!(!is_room_name(&name));
                    prop_assert!(invalid::<(), _>(Err(error)).starts_with("room name"));
                }
            }
        }
    }
}

mod message_texts {
    use super::*;

    fn is_text(value: &str) -> bool {
        value.chars().count() <= MessageText::MAX_CHARS
            && !value.trim().is_empty()
            && !value
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
    }

    proptest! {
        #[test]
        fn texts_with_content_are_kept_exactly_as_sent(
            before in "[^\\p{Cc}]{0,50}",
            content in "[^\\s\\p{Cc}]",
            after in "[\n\t[^\\p{Cc}]]{0,50}",
        ) {
            let text = format!("{before}{content}{after}");
            let parsed = MessageText::parse(text.clone()).unwrap();
            prop_assert_eq!(parsed.as_str(), text.as_str());
            prop_assert_eq!(parsed.into_string(), text);
        }

        #[test]
        fn the_length_bound_counts_characters_not_bytes(
            len in 4_000_usize..4_200,
            c in prop::sample::select(vec!['x', 'é', '€', '😀']),
        ) {
            let text = c.to_string().repeat(len);
            if len <= MessageText::MAX_CHARS {
                prop_assert_eq!(MessageText::parse(text.clone()).unwrap().into_string(), text);
            } else {
                prop_assert_eq!(
                    invalid(MessageText::parse(text)),
                    format!("message text must be at most 4096 characters, got {len}")
                );
            }
        }

        #[test]
        fn blank_texts_are_rejected(text in "[ \t\n\u{A0}\u{2003}\u{3000}]{0,20}") {
            prop_assert_eq!(
                invalid(MessageText::parse(text)),
                "message text must not be empty or only white space"
            );
        }

        #[test]
        fn texts_with_control_characters_but_newline_and_tab_are_rejected(
            before in "[a-z]{0,10}",
            control in "[\\p{Cc}&&[^\n\t]]",
            after in "[a-z]{1,10}",
        ) {
            let message = invalid(MessageText::parse(format!("{before}{control}{after}")));
            prop_assert!(
                message.starts_with("message text must not contain control characters other than newline and tab, found U+"),
                "{}",
                message
            );
        }

        #[test]
        fn any_string_is_a_text_exactly_when_it_follows_the_rules(text in any::<String>()) {
            let valid = is_text(&text);
            match MessageText::parse(text) {
                Ok(_) => prop_assert!(valid),
                Err(error) => {
                    prop_assert!(!valid);
                    prop_assert!(invalid::<(), _>(Err(error)).starts_with("message text"));
                }
            }
        }
    }
}

mod client_msg_ids {
    use super::*;

    proptest! {
        #[test]
        fn printable_keys_are_kept(key in printable(32)) {
            let parsed = ClientMsgId::parse(key.clone()).unwrap();
            prop_assert_eq!(parsed.as_deref(), Some(key.as_str()));
        }

        #[test]
        fn keys_over_128_bytes_are_rejected(key in "[!-~]{129,300}") {
            let message = invalid(ClientMsgId::parse(key.clone()));
            prop_assert_eq!(
                message,
                format!("client_msg_id must be at most 128 bytes, got {}", key.len())
            );
        }

        #[test]
        fn keys_with_control_characters_are_rejected(
            before in "[!-~]{0,10}",
            control in "\\p{Cc}",
            after in "[!-~]{0,10}",
        ) {
            let message = invalid(ClientMsgId::parse(format!("{before}{control}{after}")));
            prop_assert_eq!(message, "client_msg_id must not contain control characters");
        }

        #[test]
        fn any_string_is_a_key_exactly_when_it_follows_the_rules(key in any::<String>()) {
            let valid = key.len() <= ClientMsgId::MAX_BYTES && !key.chars().any(char::is_control);
            match ClientMsgId::parse(key.clone()) {
                Ok(parsed) => {
                    prop_assert!(valid);
                    let expected = Some(key.as_str()).filter(|k| !k.is_empty());
                    prop_assert_eq!(parsed.as_deref(), expected);
                }
                Err(error) => {
                    prop_assert!(!valid);
                    prop_assert!(invalid::<(), _>(Err(error)).starts_with("client_msg_id"));
                }
            }
        }
    }

    #[test]
    fn an_empty_key_means_none() {
        assert_eq!(ClientMsgId::parse(String::new()).unwrap().as_deref(), None);
    }
}

mod ids {
    use super::*;

    /// The same properties for every id type, which share one macro.
    macro_rules! id_properties {
        ($module:ident, $type:ty, $what:literal) => {
            mod $module {
                use super::*;

                proptest! {
                    #[test]
                    fn an_id_round_trips_through_its_text(id in uuid(), field in "[a-z_.]{1,20}") {
                        let id = <$type>::from_uuid(id);
                        prop_assert_eq!(<$type>::parse(&field, &id.to_string()).unwrap(), id);
                        prop_assert_eq!(id.to_string(), id.uuid().hyphenated().to_string());
                    }

                    #[test]
                    fn a_missing_id_names_its_field(field in "[a-z_.]{1,20}") {
                        prop_assert_eq!(
                            invalid(<$type>::parse(&field, "")),
                            format!("{field} is required")
                        );
                    }

                    #[test]
                    fn anything_but_an_id_is_rejected_naming_its_field(
                        value in any::<String>(),
                        field in "[a-z_.]{1,20}",
                    ) {
                        match <$type>::parse(&field, &value) {
                            Ok(id) => prop_assert_eq!(Ok(id.uuid()), Uuid::try_parse(&value)),
                            Err(error) => {
                                prop_assert!(value.is_empty() || Uuid::try_parse(&value).is_err());
                                let expected = if value.is_empty() {
                                    format!("{field} is required")
                                } else {
                                    format!("{field} is not a valid {}", $what)
                                };
                                prop_assert_eq!(invalid::<(), _>(Err(error)), expected);
                            }
                        }
                    }
                }

                #[test]
                fn new_ids_are_distinct_and_sort_by_creation() {
                    let (first, second) = (<$type>::new(), <$type>::new());
                    assert!(first < second);
                }
            }
        };
    }

    id_properties!(user_ids, UserId, "user id");
    id_properties!(session_ids, SessionId, "session id");
    id_properties!(room_ids, RoomId, "room id");
    id_properties!(message_ids, MessageId, "message id");
}

mod timestamps {
    use super::*;

    /// Seconds far enough from the ends of `i64` microseconds not to saturate.
    const SECS: std::ops::Range<i64> = -(i64::MAX / 2_000_000)..(i64::MAX / 2_000_000);

    proptest! {
        #[test]
        fn whole_seconds_round_trip(secs in SECS) {
            prop_assert_eq!(Timestamp::from_secs(secs).secs(), secs);
        }

        #[test]
        fn secs_round_down_even_before_the_epoch(micros in SECS) {
            let at = Timestamp(micros);
            prop_assert!(Timestamp::from_secs(at.secs()) <= at);
            prop_assert!(at < Timestamp::from_secs(at.secs() + 1));
        }

        #[test]
        fn plus_and_since_are_inverse(micros in SECS, added in 0_u64..1_000_000_000_000) {
            let at = Timestamp(micros);
            let duration = Duration::from_micros(added);
            prop_assert_eq!(at.plus(duration).since(at), duration);
            prop_assert_eq!(at.since(at.plus(duration)), Duration::ZERO);
        }

        #[test]
        fn protobuf_timestamps_are_the_same_instant(micros in SECS) {
            let converted = pb::timestamp(Timestamp(micros));
            prop_assert!((0..1_000_000_000).contains(&converted.nanos));
            prop_assert_eq!(
                i128::from(converted.seconds) * 1_000_000_000 + i128::from(converted.nanos),
                i128::from(micros) * 1_000
            );
        }

        #[test]
        fn extreme_values_saturate_rather_than_panic(micros in any::<i64>(), secs in any::<i64>()) {
            let at = Timestamp(micros);
            let _ = (at.secs(), at.plus(Duration::MAX), at.since(Timestamp(secs)));
            let _ = (Timestamp::from_secs(secs), pb::timestamp(at));
        }
    }
}

mod tokens {
    use super::*;

    const ISSUER: &str = "chat";
    const AUDIENCE: &str = "chat-clients";

    fn codec(secret: &str, issuer: &str, audience: &str) -> TokenCodec {
        TokenCodec::new(
            secret.as_bytes(),
            issuer,
            audience,
            Duration::from_secs(900),
        )
    }

    fn fresh_token(codec: &TokenCodec) -> String {
        codec
            .issue(UserId::new(), SessionId::new(), Timestamp::now())
            .unwrap()
            .0
    }

    /// Secrets that are distinct as HMAC keys: HMAC pads short keys with
    /// zero bytes, so "k" and "k\0" would be the same key.
    fn secret() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]{1,64}"
    }

    /// Claims as the server would issue them, at `now`.
    fn claims(sub: String, sid: String, now: i64) -> Claims {
        Claims {
            sub,
            sid,
            iat: now,
            exp: now + 900,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        }
    }

    proptest! {
        #[test]
        fn an_issued_token_verifies_to_its_user_session_and_expiry(
            user in uuid(),
            session in uuid(),
            lifetime in 60_u64..30 * 24 * 3600,
            age in 0_u64..60,
            secret in secret(),
        ) {
            let codec = TokenCodec::new(
                secret.as_bytes(), ISSUER, AUDIENCE, Duration::from_secs(lifetime),
            );
            let now = Timestamp::now();
            let issued_at = Timestamp(now.0 - i64::try_from(age * 1_000_000).unwrap());
            let (user, session) = (UserId::from_uuid(user), SessionId::from_uuid(session));
            let (token, expires_at) = codec.issue(user, session, issued_at).unwrap();
            prop_assert_eq!(expires_at.secs(), issued_at.secs() + i64::try_from(lifetime).unwrap());
            let subject = codec.verify(&token).unwrap();
            prop_assert_eq!(subject.user_id, user);
            prop_assert_eq!(subject.session_id, session);
            prop_assert_eq!(subject.expires_at, expires_at);
        }

        #[test]
        fn changing_any_byte_of_a_token_is_rejected(
            index in any::<prop::sample::Index>(),
            replacement in "[A-Za-z0-9_.=+/ -]",
        ) {
            let codec = codec("secret", ISSUER, AUDIENCE);
            let token = fresh_token(&codec);
            let at = index.index(token.len());
            let replacement = replacement.chars().next().unwrap();
            prop_assume!(char::from(token.as_bytes()[at]) != replacement);
            let mut changed = token.clone().into_bytes();
            changed[at] = u8::try_from(replacement).unwrap();
            let changed = String::from_utf8(changed).unwrap();
            prop_assert_eq!(unauthenticated(codec.verify(&changed)), "invalid access token");
        }

        #[test]
        fn cutting_or_extending_a_token_is_rejected(
            cut in any::<prop::sample::Index>(),
            suffix in "[A-Za-z0-9_.-]{1,8}",
        ) {
            let codec = codec("secret", ISSUER, AUDIENCE);
            let token = fresh_token(&codec);
            unauthenticated(codec.verify(&token[..cut.index(token.len())]));
            unauthenticated(codec.verify(&format!("{token}{suffix}")));
        }

        #[test]
        fn a_token_from_another_secret_is_rejected(one in secret(), two in secret()) {
            prop_assume!(one != two);
            let token = fresh_token(&codec(&one, ISSUER, AUDIENCE));
            let message = unauthenticated(codec(&two, ISSUER, AUDIENCE).verify(&token));
            prop_assert_eq!(message, "invalid access token");
        }

        #[test]
        fn a_token_for_another_issuer_or_audience_is_rejected(
            issuer in "[a-z-]{1,16}",
            audience in "[a-z-]{1,16}",
        ) {
            let ours = codec("secret", ISSUER, AUDIENCE);
            if issuer != ISSUER {
                let token = fresh_token(&codec("secret", &issuer, AUDIENCE));
                prop_assert_eq!(unauthenticated(ours.verify(&token)), "invalid access token");
            }
            if audience != AUDIENCE {
                let token = fresh_token(&codec("secret", ISSUER, &audience));
                prop_assert_eq!(unauthenticated(ours.verify(&token)), "invalid access token");
            }
        }

        #[test]
        fn an_expired_token_is_rejected(lifetime in 1_u64..3600, late in 6_u64..100_000) {
            let codec = TokenCodec::new(b"secret", ISSUER, AUDIENCE, Duration::from_secs(lifetime));
            let back = i64::try_from(lifetime + late).unwrap();
            let issued_at = Timestamp::from_secs(Timestamp::now().secs() - back);
            let (token, _) = codec.issue(UserId::new(), SessionId::new(), issued_at).unwrap();
            prop_assert_eq!(unauthenticated(codec.verify(&token)), "access token expired");
        }

        #[test]
        fn a_signed_token_whose_ids_are_not_ids_is_rejected(sub in ".{0,40}", sid in ".{0,40}") {
            prop_assume!(Uuid::try_parse(&sub).is_err() || Uuid::try_parse(&sid).is_err());
            let claims = claims(sub, sid, Timestamp::now().secs());
            let token = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"secret"),
            )
            .unwrap();
            let message = unauthenticated(codec("secret", ISSUER, AUDIENCE).verify(&token));
            prop_assert_eq!(message, "invalid access token");
        }

        #[test]
        fn a_token_signed_with_another_algorithm_is_rejected(
            algorithm in prop::sample::select(vec![Algorithm::HS384, Algorithm::HS512]),
        ) {
            let claims = claims(
                Uuid::now_v7().to_string(),
                Uuid::now_v7().to_string(),
                Timestamp::now().secs(),
            );
            let token = jsonwebtoken::encode(
                &Header::new(algorithm),
                &claims,
                &EncodingKey::from_secret(b"secret"),
            )
            .unwrap();
            let message = unauthenticated(codec("secret", ISSUER, AUDIENCE).verify(&token));
            prop_assert_eq!(message, "invalid access token");
        }

        #[test]
        fn arbitrary_strings_are_rejected(token in any::<String>()) {
            unauthenticated(codec("secret", ISSUER, AUDIENCE).verify(&token));
        }

        #[test]
        fn arbitrary_three_part_tokens_are_rejected(
            token in "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,60}"
        ) {
            unauthenticated(codec("secret", ISSUER, AUDIENCE).verify(&token));
        }

        #[test]
        fn refresh_token_hashes_are_deterministic_and_distinct(
            one in any::<String>(),
            two in any::<String>(),
        ) {
            prop_assert_eq!(token::refresh_token_hash(&one), token::refresh_token_hash(&one));
            prop_assert_eq!(token::refresh_token_hash(&one).len(), 32);
            if one != two {
                prop_assert_ne!(token::refresh_token_hash(&one), token::refresh_token_hash(&two));
            }
        }
    }

    #[test]
    fn an_unsigned_token_is_rejected() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let claims = claims(
            Uuid::now_v7().to_string(),
            Uuid::now_v7().to_string(),
            Timestamp::now().secs(),
        );
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let codec = codec("secret", ISSUER, AUDIENCE);
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            assert_eq!(
                unauthenticated(codec.verify(&token)),
                "invalid access token"
            );
        }
    }

    #[test]
    fn fresh_refresh_tokens_are_distinct_url_safe_256_bit_strings() {
        let tokens: Vec<String> = (0..1000).map(|_| token::new_refresh_token()).collect();
        let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len());
        for token in &tokens {
            assert_eq!(token.len(), 43, "{token}");
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }
}

mod requests_validation {
    use super::*;

    /// Room ids as clients send them: valid, missing or garbled.
    fn room_id_text() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => uuid().prop_map(|id| id.to_string()),
            1 => Just(String::new()),
            1 => any::<String>(),
        ]
    }

    fn encode(message: &impl prost::Message) -> Vec<u8> {
        message.encode_to_vec()
    }

    proptest! {
        // Cheap enough for many more cases than the default 256.
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn no_bytes_make_validation_panic_or_fail_as_a_server_error(
            kind in any::<u8>(),
            bytes in vec(any::<u8>(), 0..512),
        ) {
            if let Err(error) = requests::check_encoded(RequestKind::from_byte(kind), &bytes) {
                prop_assert!(
                    matches!(error.code(), Code::InvalidArgument | Code::Unauthenticated),
                    "{:?}", error
                );
            }
        }
    }

    proptest! {

        #[test]
        fn encoded_requests_are_checked_as_their_handlers_check_them(
            room_id in room_id_text(),
            text in any::<String>(),
            client_msg_id in any::<String>(),
        ) {
            let send = pb::SendMessageRequest {
                room_id: room_id.clone(),
                text: text.clone(),
                client_msg_id: client_msg_id.clone(),
                ..Default::default()
            };
            let valid = RoomId::parse("room_id", &room_id).is_ok()
                && MessageText::parse(text).is_ok()
                && ClientMsgId::parse(client_msg_id).is_ok();
            let direct = requests::send_message(send.clone());
            prop_assert_eq!(direct.is_ok(), valid);
            let encoded = requests::check_encoded(RequestKind::SendMessage, &encode(&send));
            prop_assert_eq!(encoded.is_ok(), valid);
            let typing = pb::SendTypingRequest { room_id: room_id.clone() };
            prop_assert_eq!(
                requests::check_encoded(RequestKind::SendTyping, &encode(&typing)).is_ok(),
                RoomId::parse("room_id", &room_id).is_ok()
            );
        }

        #[test]
        fn every_kind_accepts_its_valid_requests(
            id in uuid(),
            name in "[A-Za-z0-9_.-]{3,32}",
            password in "(?s).{8,64}",
            room_name in "[a-z]{1,64}",
            text in "[a-z]{1,100}",
            limit in any::<u32>(),
            before_seq in any::<u64>(),
            nonce in any::<u64>(),
        ) {
            let id = id.to_string();
            let send = pb::SendMessageRequest {
                room_id: id.clone(),
                text,
                client_msg_id: String::new(),
                ..Default::default()
            };
            let cursors = vec![pb::RoomCursor { room_id: id.clone(), after_seq: before_seq }];
            let requests: Vec<(RequestKind, Vec<u8>)> = vec![
                (RequestKind::Register, encode(&pb::RegisterRequest {
                    username: name.clone(),
                    password: password.clone(),
                })),
                (RequestKind::Login, encode(&pb::LoginRequest {
                    username: name.clone(),
                    password,
                })),
                (RequestKind::Refresh, encode(&pb::RefreshRequest { refresh_token: name.clone() })),
                (RequestKind::RevokeSession, encode(&pb::RevokeSessionRequest {
                    session_id: id.clone(),
                })),
                (RequestKind::CreateRoom, encode(&pb::CreateRoomRequest {
            name: room_name,
            ..Default::default()
        })),
                (RequestKind::JoinRoom, encode(&pb::JoinRoomRequest { room_id: id.clone() })),
                (RequestKind::LeaveRoom, encode(&pb::LeaveRoomRequest { room_id: id.clone() })),
                (RequestKind::OpenDirectRoom, encode(&pb::OpenDirectRoomRequest {
                    username: name,
                })),
                (RequestKind::SendMessage, encode(&send)),
                (RequestKind::SendTyping, encode(&pb::SendTypingRequest { room_id: id.clone() })),
                (RequestKind::History, encode(&pb::HistoryRequest {
                    room_id: id.clone(),
                    before_seq,
                    limit,
                })),
                (RequestKind::ListOnlineUsers, encode(&pb::ListOnlineUsersRequest {
                    room_id: id.clone(),
                })),
                (RequestKind::Subscribe, encode(&pb::SubscribeRequest { cursors })),
                (RequestKind::ClientEvent, encode(&pb::ClientEvent {
                    event: Some(pb::client_event::Event::Ping(pb::client_event::Ping { nonce })),
                })),
                (RequestKind::ClientEvent, encode(&pb::ClientEvent {
                    event: Some(pb::client_event::Event::Send(send)),
                })),
            ];
            for (kind, bytes) in requests {
                let checked = requests::check_encoded(kind, &bytes);
                prop_assert!(checked.is_ok(), "{:?}: {:?}", kind, checked);
            }
        }

        #[test]
        fn history_limits_default_to_50_and_are_clamped_to_200(
            id in uuid(),
            before_seq in any::<u64>(),
            limit in prop_oneof![Just(0_u32), 1_u32..300, any::<u32>()],
        ) {
            let page = requests::history(&pb::HistoryRequest {
                room_id: id.to_string(),
                before_seq,
                limit,
            })
            .unwrap();
            prop_assert_eq!(page.room_id.uuid(), id);
            prop_assert_eq!(page.before_seq, before_seq);
            let expected = if limit == 0 { 50 } else { limit.min(200) };
            prop_assert_eq!(page.limit, expected);
        }

        #[test]
        fn distinct_cursors_are_kept_in_order(
            cursors in vec((uuid(), any::<u64>()), 0..50),
        ) {
            let mut seen = std::collections::HashSet::new();
            let cursors: Vec<(Uuid, u64)> =
                cursors.into_iter().filter(|(id, _)| seen.insert(*id)).collect();
            let request: Vec<pb::RoomCursor> = cursors
                .iter()
                .map(|(id, after_seq)| pb::RoomCursor {
                    room_id: id.to_string(),
                    after_seq: *after_seq,
                })
                .collect();
            let checked = requests::cursors(&request).unwrap();
            let checked: Vec<(Uuid, u64)> =
                checked.into_iter().map(|(room, seq)| (room.uuid(), seq)).collect();
            prop_assert_eq!(checked, cursors);
        }

        #[test]
        fn a_room_named_twice_in_cursors_is_rejected(
            ids in vec(uuid(), 1..20),
            twice in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
        ) {
            let mut cursors: Vec<pb::RoomCursor> = ids
                .iter()
                .map(|id| pb::RoomCursor { room_id: id.to_string(), after_seq: 0 })
                .collect();
            let repeated = cursors[twice.index(cursors.len())].clone();
            cursors.insert(at.index(cursors.len() + 1), repeated.clone());
            let message = invalid(requests::cursors(&cursors));
            prop_assert!(message.ends_with("appears twice in cursors"), "{}", message);
        }

        #[test]
        fn a_malformed_cursor_names_its_field(
            ids in vec(uuid(), 0..10),
            bad in any::<String>().prop_filter("not an id", |s| Uuid::try_parse(s).is_err()),
            at in any::<prop::sample::Index>(),
        ) {
            let mut cursors: Vec<pb::RoomCursor> = ids
                .iter()
                .map(|id| pb::RoomCursor { room_id: id.to_string(), after_seq: 0 })
                .collect();
            let malformed = pb::RoomCursor { room_id: bad, after_seq: 0 };
            cursors.insert(at.index(cursors.len() + 1), malformed);
            let message = invalid(requests::cursors(&cursors));
            prop_assert!(message.starts_with("cursors.room_id is"), "{}", message);
        }

        #[test]
        fn malformed_logins_get_the_same_answer_as_wrong_passwords(
            username in any::<String>(),
            password in any::<String>(),
        ) {
            let valid = Username::parse(&username).is_ok()
                && Password::parse(password.clone()).is_ok();
            let login = requests::login(pb::LoginRequest { username, password });
            if !valid {
                prop_assert_eq!(unauthenticated(login), "invalid username or password");
            }
        }

        #[test]
        fn client_events_are_checked_like_their_unary_twins(
            room_id in room_id_text(),
            text in any::<String>(),
            client_msg_id in any::<String>(),
            nonce in any::<u64>(),
        ) {
            use pb::client_event::{Event, Ping, Typing};
            let send = pb::SendMessageRequest {
                room_id: room_id.clone(),
                text,
                client_msg_id: client_msg_id.clone(),
                ..Default::default()
            };
            let event = pb::ClientEvent { event: Some(Event::Send(send.clone())) };
            match (requests::client_event(event), requests::send_message(send)) {
                (Ok(ClientEvent::Send(streamed)), Ok(unary)) => prop_assert_eq!(streamed, unary),
                (Err(rejected), Err(error)) => {
                    prop_assert_eq!(rejected.client_msg_id, client_msg_id);
                    prop_assert_eq!(rejected.error.to_string(), error.to_string());
                }
                (streamed, unary) => prop_assert!(false, "{:?} but {:?}", streamed, unary),
            }
            let typing = pb::ClientEvent {
                event: Some(Event::Typing(Typing { room_id: room_id.clone() })),
            };
            let unary = requests::send_typing(&pb::SendTypingRequest { room_id });
            match (requests::client_event(typing), unary) {
                (Ok(ClientEvent::Typing(streamed)), Ok(unary)) => prop_assert_eq!(streamed, unary),
                (Err(rejected), Err(error)) => {
                    prop_assert_eq!(rejected.client_msg_id, "");
                    prop_assert_eq!(rejected.error.to_string(), error.to_string());
                }
                (streamed, unary) => prop_assert!(false, "{:?} but {:?}", streamed, unary),
            }
            let ping = pb::ClientEvent { event: Some(Event::Ping(Ping { nonce })) };
            prop_assert_eq!(requests::client_event(ping).unwrap(), ClientEvent::Ping { nonce });
        }
    }

    #[test]
    fn a_resume_after_the_first_event_or_no_event_is_rejected() {
        use pb::client_event::{Event, Resume};
        let resume = pb::ClientEvent {
            event: Some(Event::Resume(Resume { cursors: vec![] })),
        };
        let rejected = requests::client_event(resume).unwrap_err();
        assert_eq!(
            invalid::<(), _>(Err(rejected.error)),
            "resume is only valid as the first event of a stream"
        );
        let rejected = requests::client_event(pb::ClientEvent { event: None }).unwrap_err();
        assert_eq!(invalid::<(), _>(Err(rejected.error)), "event is required");
    }

    #[test]
    fn at_most_1000_cursors_are_accepted() {
        let cursors = |n: usize| -> Vec<pb::RoomCursor> {
            (0..n)
                .map(|_| pb::RoomCursor {
                    room_id: Uuid::now_v7().to_string(),
                    after_seq: 0,
                })
                .collect()
        };
        assert_eq!(requests::cursors(&cursors(1000)).unwrap().len(), 1000);
        assert_eq!(
            invalid(requests::cursors(&cursors(1001))),
            "at most 1000 cursors, got 1001"
        );
    }

    #[test]
    fn every_byte_names_a_request_kind() {
        for (byte, kind) in (0..=u8::MAX).zip(RequestKind::ALL.iter().cycle()) {
            assert_eq!(RequestKind::from_byte(byte), *kind);
        }
    }
}
