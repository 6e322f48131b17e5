//! What a name people read may hold: the characters refused in room
//! names, topics and display names, in a module of its own so that the
//! type modules depend on it and it on nothing but the error.

use crate::error::ParseError;

/// Refuses the characters a name people read must not hold.
///
/// # Errors
/// A [`ParseError`] naming the first such character.
pub(crate) fn check_name_characters(what: &str, name: &str) -> Result<(), ParseError> {
    for c in name.chars() {
        let problem = if c.is_control() {
            "control"
        } else if is_bidi_control(c) {
            "bidirectional-control"
        } else if is_invisible(c) {
            "invisible"
        } else {
            continue;
        };
        return Err(ParseError::new(format!(
            "{what} must not contain {problem} characters, found U+{:04X}",
            u32::from(c)
        )));
    }
    Ok(())
}

/// Characters that reorder the text around them (Unicode's bidirectional
/// formatting characters): in a name, they make what follows it read
/// backwards.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing: Unicode's Default_Ignorable_Code_Point
/// (DerivedCoreProperties.txt), written out here because no maintained
/// crate exports it, less the emoji variation selectors U+FE0E and U+FE0F,
/// which only choose how the emoji before them is drawn. The zero-width
/// joiner of emoji sequences is refused with the rest.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0D}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}
