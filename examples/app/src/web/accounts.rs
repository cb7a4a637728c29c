//! The service's own customer accounts: just enough sign-in to show that each customer
//! sees only its own connections. A customer's email is its `OwnerId` in the store.
//!
//! A real service has its own accounts and sign-in; what matters here is that every
//! store call passes the signed-in customer as the owner.
//!
//! Key decisions:
//! - Passwords are kept as Argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`,
//!   the `RustCrypto` `argon2` crate), each with a random 16-byte salt of its own, with the
//!   crate's recommended parameters (OWASP's: 19 MiB, 2 passes, 1 lane). Verification
//!   compares the hashes in constant time (`password-hash`'s `Output` equality).
//! - Argon2 is slow on purpose (tens of milliseconds, most of it memory traffic), so
//!   hashing and verifying run on tokio's blocking pool, never on the async workers.
//! - An unknown email costs one verification too (against a dummy hash with the same
//!   parameters), so the answer's timing does not tell which emails are customers.
//! - [`SignInLimiter`]: sign-in attempts are rate limited per email and per client
//!   address (GCRA, the `governor` crate), an IPv6 client by its /64 prefix (one
//!   subscriber's block, in which it rotates its addresses at will), in this instance's
//!   memory: with N instances behind one address an attacker gets N times the budget,
//!   still a handful of guesses a minute against Argon2. Keeping the counters in the
//!   database would cost a write per attempt on every instance for little gain, so they
//!   stay per instance.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use connection_store::OwnerId;
use governor::clock::Clock;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};

/// How costly a customer's password hash is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordCost {
    /// The `argon2` crate's recommended parameters (Argon2id, 19 MiB, 2 passes, 1 lane):
    /// what the app uses.
    Recommended,
    /// The smallest Argon2id (8 KiB, 1 pass): for tests only, where a debug build would
    /// spend seconds on the recommended cost.
    TestOnly,
}

impl PasswordCost {
    fn params(self) -> Params {
        match self {
            Self::Recommended => Params::DEFAULT,
            Self::TestOnly => {
                Params::new(Params::MIN_M_COST, 1, 1, None).unwrap_or(Params::DEFAULT)
            }
        }
    }

    fn hasher(self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params())
    }
}

/// One customer account of the service.
#[derive(Clone)]
pub struct Customer {
    /// The sign-in name, lower-cased; also the store's owner id.
    pub email: String,
    /// The Argon2id PHC string of the password (salt and parameters included).
    password_hash: String,
    cost: PasswordCost,
}

impl std::fmt::Debug for Customer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Customer")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl Customer {
    /// A customer signing in with `email` and `password`, hashed with the recommended
    /// cost (this blocks for the hash: call it at start-up, or on the blocking pool).
    pub fn new(email: &str, password: &SecretString) -> Self {
        Self::with_cost(email, password, PasswordCost::Recommended)
    }

    /// A customer whose password is hashed at `cost`.
    pub fn with_cost(email: &str, password: &SecretString, cost: PasswordCost) -> Self {
        Self {
            email: normalize(email),
            password_hash: hash(password, cost),
            cost,
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

    /// The two demo customers, whose passwords the example prints at start, with their
    /// hashes made once ([`DEMO_PASSWORD_HASHES`]) rather than at every start.
    pub(crate) fn demo() -> Vec<Self> {
        DEMO_CUSTOMERS
            .iter()
            .zip(DEMO_PASSWORD_HASHES)
            .map(|((email, _), hash)| Self {
                email: normalize(email),
                password_hash: (*hash).to_owned(),
                cost: PasswordCost::Recommended,
            })
            .collect()
    }

    /// The demo customers with their passwords hashed at `cost`.
    pub fn demo_with_cost(cost: PasswordCost) -> Vec<Self> {
        DEMO_CUSTOMERS
            .iter()
            .map(|(email, password)| Self::with_cost(email, &SecretString::from(*password), cost))
            .collect()
    }
}

/// The demo customers and their passwords.
pub const DEMO_CUSTOMERS: &[(&str, &str)] = &[
    ("alice@example.com", "alice-demo"),
    ("bob@example.com", "bob-demo"),
];

/// The demo customers' passwords hashed with the recommended cost, in the order of
/// [`DEMO_CUSTOMERS`] (the passwords are public: their salts need not be secret either).
const DEMO_PASSWORD_HASHES: &[&str] = &[
    "$argon2id$v=19$m=19456,t=2,p=1$RBjIWDXmNggH6u1efM+rZA$sZsb+TxZDM2Ir4HnBp+owJ/doUfAhnwHPl7sQxcTG0U",
    "$argon2id$v=19$m=19456,t=2,p=1$R9psg4+QT52Au82t9XvhtA$46a67YQJXj2Bmacc7HSthHnXbvMd+c4xiTf1YjZrgUM",
];

fn normalize(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The PHC string of `password` with a fresh random salt. A hash that fails (only
/// impossible parameters can make it) is logged and kept empty: that customer cannot
/// sign in, which is safe.
fn hash(password: &SecretString, cost: PasswordCost) -> String {
    let mut salt = [0_u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let hashed = SaltString::encode_b64(&salt).and_then(|salt| {
        cost.hasher()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|hash| hash.to_string())
    });
    hashed.unwrap_or_else(|error| {
        tracing::error!(%error, "could not hash a customer's password");
        String::new()
    })
}

/// Whether `password` matches the PHC string `hash` (the parameters are the string's;
/// the hashes are compared in constant time). A malformed string matches nothing.
fn verify(hash: &str, password: &SecretString) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of nothing in particular at `cost`, made once, that unknown emails are
/// verified against.
fn dummy_hash(cost: PasswordCost) -> &'static str {
    static RECOMMENDED: OnceLock<String> = OnceLock::new();
    static TEST_ONLY: OnceLock<String> = OnceLock::new();
    let cell = match cost {
        PasswordCost::Recommended => &RECOMMENDED,
        PasswordCost::TestOnly => &TEST_ONLY,
    };
    cell.get_or_init(|| hash(&SecretString::from("no customer has this password"), cost))
}

/// The customer with this email and password; `None` for an unknown email or a wrong
/// password alike, after the same work (one Argon2 verification on the blocking pool).
pub(crate) async fn authenticate(
    customers: &[Customer],
    email: &str,
    password: SecretString,
) -> Option<Customer> {
    let email = normalize(email);
    let found = customers.iter().find(|c| c.email == email).cloned();
    let (hash, cost) = match &found {
        Some(customer) => (Some(customer.password_hash.clone()), customer.cost),
        None => (
            None,
            customers
                .first()
                .map_or(PasswordCost::Recommended, |c| c.cost),
        ),
    };
    let matches = tokio::task::spawn_blocking(move || {
        if let Some(hash) = hash {
            verify(&hash, &password)
        } else {
            let _ = verify(dummy_hash(cost), &password);
            false
        }
    })
    .await
    .unwrap_or(false);
    found.filter(|_| matches)
}

/// Sign-in attempts per email (lower-cased): a burst of 5, then one every 12 seconds
/// (5 a minute). A person mistyping gets five tries at once; a guesser gets 7,200 a day
/// per email and instance, against Argon2.
pub const ATTEMPTS_PER_EMAIL: u32 = 5;

/// Sign-in attempts per client address: a burst of 20, then 20 a minute (offices share
/// an address; one address still cannot spray many emails). An IPv6 client counts by its
/// /64 prefix (see [`budget_address`]).
pub const ATTEMPTS_PER_ADDRESS: u32 = 20;

/// The address whose budget an attempt from `address` spends: an IPv4 address as it is
/// (also when it arrives IPv4-mapped, `::ffff:a.b.c.d`, on a dual-stack listener), an
/// IPv6 address with its last 64 bits zeroed. A /64 is the smallest block a subscriber
/// or network is given (RFC 6177), and hosts pick and rotate the last 64 bits
/// themselves (SLAAC with temporary addresses, RFC 8981), so one client per /128 could
/// try from a new address every time.
pub(crate) fn budget_address(address: IpAddr) -> IpAddr {
    const PREFIX_64: u128 = u128::MAX << 64;
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & PREFIX_64)),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The clock of the limiter: tokio's, so that tests on paused time move it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

type Keyed<K> = RateLimiter<K, HashMapStateStore<K>, TokioClock>;

/// This instance's sign-in rate limits ([`ATTEMPTS_PER_EMAIL`], [`ATTEMPTS_PER_ADDRESS`]).
pub(crate) struct SignInLimiter {
    by_email: Keyed<String>,
    by_address: Keyed<IpAddr>,
}

impl std::fmt::Debug for SignInLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInLimiter").finish_non_exhaustive()
    }
}

impl Default for SignInLimiter {
    fn default() -> Self {
        let quota = |per_minute: u32| {
            Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
        };
        Self {
            by_email: RateLimiter::hashmap_with_clock(quota(ATTEMPTS_PER_EMAIL), TokioClock),
            by_address: RateLimiter::hashmap_with_clock(quota(ATTEMPTS_PER_ADDRESS), TokioClock),
        }
    }
}

impl SignInLimiter {
    /// Counts an attempt to sign in as `email` from `address` (by its
    /// [`budget_address`]): `Err` with how long to wait when either limit is reached.
    ///
    /// The address is checked first. An attempt the address limit refuses is not counted
    /// against the email; one the email limit refuses has been counted against the
    /// address already (`governor` has no check that does not count). So an address over
    /// its budget can no longer spend any customer's email budget, and someone retrying
    /// one email past its limit spends their address's budget meanwhile.
    pub(crate) fn check(&self, email: &str, address: IpAddr) -> Result<(), Duration> {
        check(&self.by_address, &budget_address(address))?;
        check(&self.by_email, &normalize(email))
    }

    /// Forgets the emails and addresses whose budget is full again (run now and then, so
    /// that the maps hold only recent attempts).
    pub(crate) fn forget_idle(&self) {
        self.by_email.retain_recent();
        self.by_email.shrink_to_fit();
        self.by_address.retain_recent();
        self.by_address.shrink_to_fit();
    }
}

fn check<K: Hash + Eq + Clone>(limiter: &Keyed<K>, key: &K) -> Result<(), Duration> {
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(TokioClock.now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customers() -> Vec<Customer> {
        Customer::demo_with_cost(PasswordCost::TestOnly)
    }

    #[tokio::test]
    async fn authenticates_only_the_right_password_and_ignores_email_case() {
        let customers = customers();
        let secret = |s: &str| SecretString::from(s.to_owned());
        let alice = authenticate(&customers, " Alice@Example.com ", secret("alice-demo")).await;
        assert_eq!(alice.map(|c| c.email), Some("alice@example.com".to_owned()));
        assert!(
            authenticate(&customers, "alice@example.com", secret("bob-demo"))
                .await
                .is_none()
        );
        assert!(
            authenticate(&customers, "carol@example.com", secret("alice-demo"))
                .await
                .is_none()
        );
    }

    #[test]
    fn the_demo_hashes_are_the_demo_passwords_at_the_recommended_cost() {
        let demo = Customer::demo();
        assert_eq!(demo.len(), DEMO_CUSTOMERS.len());
        for (customer, (email, password)) in demo.iter().zip(DEMO_CUSTOMERS) {
            assert_eq!(customer.email, *email);
            assert!(
                customer
                    .password_hash
                    .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
            );
            assert!(verify(
                &customer.password_hash,
                &SecretString::from(*password)
            ));
        }
    }

    #[test]
    fn passwords_are_salted_argon2id_phc_strings_with_the_recommended_cost() {
        let password = SecretString::from("alice-demo");
        let one = Customer::new("a@x", &password);
        let two = Customer::new("a@x", &password);
        assert!(
            one.password_hash
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            one.password_hash
        );
        assert_ne!(one.password_hash, two.password_hash, "a salt of its own");
        assert!(!one.password_hash.contains("alice-demo"));
        assert!(verify(&one.password_hash, &password));
        assert!(!verify(
            &one.password_hash,
            &SecretString::from("alice-demO")
        ));
        assert!(!verify("", &password), "a malformed hash matches nothing");
    }

    #[tokio::test]
    async fn parses_the_option_and_never_shows_the_password() {
        let customer = Customer::parse("ops@example.org:s3cret:with:colons").unwrap();
        assert_eq!(customer.owner().as_str(), "ops@example.org");
        let customers = [customer];
        let password = SecretString::from("s3cret:with:colons");
        assert!(
            authenticate(&customers, "ops@example.org", password)
                .await
                .is_some()
        );
        let debug = format!("{:?}", customers[0]);
        assert!(
            !debug.contains("s3cret") && !debug.contains("argon2"),
            "{debug}"
        );
        assert!(Customer::parse("nopassword").is_err());
        assert!(Customer::parse(":x").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn five_attempts_per_email_then_one_every_twelve_seconds() {
        let limiter = SignInLimiter::default();
        let here: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..ATTEMPTS_PER_EMAIL {
            assert_eq!(limiter.check("a@x", here), Ok(()));
        }
        let wait = limiter.check(" A@X ", here).unwrap_err();
        assert!(
            wait > Duration::from_secs(11) && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
        // Another email from the same address is not held back by a@x's limit.
        assert_eq!(limiter.check("b@x", here), Ok(()));
        tokio::time::advance(Duration::from_secs(12)).await;
        assert_eq!(limiter.check("a@x", here), Ok(()));
        assert!(limiter.check("a@x", here).is_err());
        tokio::time::advance(Duration::from_secs(60)).await;
        limiter.forget_idle();
        for _ in 0..ATTEMPTS_PER_EMAIL {
            assert_eq!(limiter.check("a@x", here), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn twenty_attempts_per_address_whatever_the_email() {
        let limiter = SignInLimiter::default();
        let here: IpAddr = [192, 0, 2, 1].into();
        let there: IpAddr = [192, 0, 2, 2].into();
        for n in 0..ATTEMPTS_PER_ADDRESS {
            assert_eq!(limiter.check(&format!("user{n}@x"), here), Ok(()));
        }
        assert!(limiter.check("new@x", here).is_err());
        assert_eq!(limiter.check("new@x", there), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_email_refusal_still_spends_the_address_budget_and_an_address_refusal_not_the_emails()
     {
        let limiter = SignInLimiter::default();
        let here: IpAddr = [198, 51, 100, 7].into();
        let there: IpAddr = [198, 51, 100, 8].into();
        for _ in 0..ATTEMPTS_PER_EMAIL {
            assert_eq!(limiter.check("a@x", here), Ok(()));
        }
        // Refused by a@x's limit, yet counted against the address: as documented.
        let refused_by_email = ATTEMPTS_PER_ADDRESS - ATTEMPTS_PER_EMAIL;
        for _ in 0..refused_by_email {
            assert!(limiter.check("a@x", here).is_err());
        }
        assert!(
            limiter.check("b@x", here).is_err(),
            "the address spent its 20"
        );
        // b@x was refused by the address: its own budget is whole.
        for _ in 0..ATTEMPTS_PER_EMAIL {
            assert_eq!(limiter.check("b@x", there), Ok(()));
        }
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let address = |text: &str| text.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            budget_address(address("2001:db8:1:2:a:b:c:d")),
            address("2001:db8:1:2::")
        );
        assert_eq!(
            budget_address(address("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            address("2001:db8:1:2::")
        );
        assert_eq!(
            budget_address(address("2001:db8:1:3::1")),
            address("2001:db8:1:3::")
        );
        assert_eq!(budget_address(address("192.0.2.1")), address("192.0.2.1"));
        assert_eq!(
            budget_address(address("::ffff:192.0.2.1")),
            address("192.0.2.1")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_ipv6_client_rotating_addresses_in_its_64_shares_one_budget() {
        let limiter = SignInLimiter::default();
        let in_prefix = |n: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 7, 9, 0xa, 0, 1, n));
        for n in 0..u16::try_from(ATTEMPTS_PER_ADDRESS).unwrap_or(u16::MAX) {
            assert_eq!(
                limiter.check(&format!("user{n}@x"), in_prefix(n)),
                Ok(()),
                "{n}"
            );
        }
        // A fresh address in the same /64 gets no fresh budget.
        assert!(limiter.check("new@x", in_prefix(1_000)).is_err());
        // Another /64 has its own.
        let next_prefix = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 7, 10, 0, 0, 0, 1));
        assert_eq!(limiter.check("new@x", next_prefix), Ok(()));
        // Dual-stack listeners see IPv4 clients IPv4-mapped: each keeps its own budget.
        let mapped =
            |last: u8| IpAddr::V6(std::net::Ipv4Addr::new(192, 0, 2, last).to_ipv6_mapped());
        for n in 0..ATTEMPTS_PER_ADDRESS {
            assert_eq!(limiter.check(&format!("v4-{n}@x"), mapped(1)), Ok(()));
        }
        assert!(limiter.check("v4-new@x", mapped(1)).is_err());
        assert_eq!(limiter.check("v4-new@x", mapped(2)), Ok(()));
    }
}
