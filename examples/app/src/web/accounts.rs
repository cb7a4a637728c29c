//! The service's own customer accounts: just enough sign-in to show that each customer
//! sees only its own connections. A customer's email is its `OwnerId` in the store.
//!
//! A real service has its own accounts and sign-in; what matters here is that every
//! store call passes the signed-in customer as the owner.

use connection_store::OwnerId;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// One customer account of the service.
#[derive(Clone)]
pub struct Customer {
    /// The sign-in name, lower-cased; also the store's owner id.
    pub email: String,
    /// SHA-256 of the password. An example: a real service uses a password hash such as
    /// Argon2 and its own user database.
    password_digest: [u8; 32],
}

impl std::fmt::Debug for Customer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Customer")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl Customer {
    /// A customer signing in with `email` and `password`.
    pub fn new(email: &str, password: &SecretString) -> Self {
        Self {
            email: email.trim().to_lowercase(),
            password_digest: digest(password.expose_secret()),
        }
    }

    /// Parses `email:password` (the `--customer` option).
    ///
    /// # Errors
    /// When there is no `:`, or either side is empty.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (email, password) = spec
            .split_once(':')
            .ok_or_else(|| "expected email:password".to_owned())?;
        if email.trim().is_empty() || password.is_empty() {
            return Err("expected email:password, both non-empty".to_owned());
        }
        Ok(Self::new(email, &SecretString::from(password.to_owned())))
    }

    /// The store owner id of this customer.
    pub fn owner(&self) -> OwnerId {
        OwnerId::new(self.email.clone())
    }

    /// The two demo customers, whose passwords the example prints at start.
    pub(crate) fn demo() -> Vec<Self> {
        DEMO_CUSTOMERS
            .iter()
            .map(|(email, password)| Self::new(email, &SecretString::from(*password)))
            .collect()
    }
}

/// The demo customers and their passwords.
pub const DEMO_CUSTOMERS: &[(&str, &str)] = &[
    ("alice@example.com", "alice-demo"),
    ("bob@example.com", "bob-demo"),
];

fn digest(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

/// The customer with this email and password, comparing in constant time; `None` for an
/// unknown email or a wrong password alike.
pub(crate) fn authenticate<'a>(
    customers: &'a [Customer],
    email: &str,
    password: &str,
) -> Option<&'a Customer> {
    let email = email.trim().to_lowercase();
    let given = digest(password);
    customers
        .iter()
        .find(|c| c.email == email)
        .filter(|c| bool::from(c.password_digest.ct_eq(&given)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticates_only_the_right_password_and_ignores_email_case() {
        let customers = Customer::demo();
        let alice = authenticate(&customers, " Alice@Example.com ", "alice-demo");
        assert_eq!(alice.map(|c| c.email.as_str()), Some("alice@example.com"));
        assert!(authenticate(&customers, "alice@example.com", "bob-demo").is_none());
        assert!(authenticate(&customers, "carol@example.com", "alice-demo").is_none());
    }

    #[test]
    fn parses_the_option_and_never_shows_the_password() {
        let customer = Customer::parse("ops@example.org:s3cret:with:colons").unwrap();
        assert_eq!(customer.owner().as_str(), "ops@example.org");
        let customers = [customer];
        assert!(authenticate(&customers, "ops@example.org", "s3cret:with:colons").is_some());
        assert!(!format!("{:?}", customers[0]).contains("s3cret"));
        assert!(Customer::parse("nopassword").is_err());
        assert!(Customer::parse(":x").is_err());
    }
}
