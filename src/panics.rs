//! A caught panic's message as text: the one way the executor's stage guard
//! and the libjpeg guard read what a panic said.

use std::any::Any;

/// What a panic said, if it said it as text (`panic!` with a literal or
/// with formatting); `None` for any other payload.
pub fn message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn literal_and_formatted_panics_read_the_same() {
        let literal = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        let n = 3;
        let formatted = std::panic::catch_unwind(|| panic!("item {n}")).unwrap_err();
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(message(literal.as_ref()), Some("plain"));
        assert_eq!(message(formatted.as_ref()), Some("item 3"));
        assert_eq!(message(other.as_ref()), None);
    }
}
