//! A small library for the final-verification example.

/// Adds two numbers.
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Multiplies two numbers.
pub fn mul(a: i64, b: i64) -> i64 {
    a * b
}

/// The absolute value.
pub fn abs(a: i64) -> i64 {
    if a < 0 {
        -a
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds() {
        assert_eq!(add(2, 3), 5);
    }

    #[test]
    fn multiplies() {
        assert_eq!(mul(-2, 3), -6);
    }

    #[test]
    fn absolute() {
        assert_eq!(abs(-4), 4);
        assert_eq!(abs(4), 4);
    }
}
