//! Roles: who may log in, with which SCRAM-SHA-256 verifier, and what each
//! may do.
//!
//! A role is kept in the database's catalog (extension key `role:<name>`,
//! postcard-encoded [`Role`], see `docs/server.md`), so it is durable like
//! any table definition. The password itself is never stored: only
//! PostgreSQL's SCRAM verifier `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
//! (RFC 5802 / 7677), from which a password cannot be recovered and with
//! which a client cannot log in.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};
use tessera_engine::Database;

use super::WireError;

/// The catalog key prefix of roles.
const PREFIX: &str = "role:";
/// PBKDF2 iterations of new verifiers (PostgreSQL's default).
pub const ITERATIONS: u32 = 4096;

/// What a role may do to one table (or every table of a schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Privilege {
    /// Read rows.
    Select,
    /// Add rows (`INSERT`, `COPY FROM`).
    Insert,
    /// Change rows.
    Update,
    /// Remove rows.
    Delete,
    /// Read PII columns unmasked (`GRANT pii_reader TO role`; held on the
    /// object `*`). Last, so roles stored before it still decode.
    PiiRead,
}

impl Privilege {
    /// The privilege a keyword names.
    pub fn parse(word: &str) -> Option<Privilege> {
        match word.to_ascii_uppercase().as_str() {
            "SELECT" => Some(Privilege::Select),
            "INSERT" => Some(Privilege::Insert),
            "UPDATE" => Some(Privilege::Update),
            "DELETE" => Some(Privilege::Delete),
            _ => None,
        }
    }

    /// Its SQL keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::PiiRead => "pii_reader",
        }
    }
}

/// One grant: a privilege on a table (`schema.table`) or on every table of
/// a schema (`schema.*`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    /// `schema.table` or `schema.*`.
    pub object: String,
    /// The privilege.
    pub privilege: Privilege,
}

/// A role as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its name (as PostgreSQL folds it).
    pub name: String,
    /// May do everything, including DDL, roles and server-side files.
    pub superuser: bool,
    /// May log in.
    pub login: bool,
    /// The SCRAM-SHA-256 verifier, or empty for a role without a password
    /// (which cannot log in).
    pub verifier: String,
    /// Privileges granted.
    pub grants: BTreeSet<Grant>,
}

/// The object a `pii_reader` grant is held on.
pub const PII_OBJECT: &str = "*";

impl Role {
    /// Whether the role reads PII columns unmasked: a superuser, or a
    /// role granted `pii_reader`.
    pub fn pii_reader(&self) -> bool {
        self.superuser
            || self.grants.contains(&Grant {
                object: PII_OBJECT.to_string(),
                privilege: Privilege::PiiRead,
            })
    }

    /// How the role's queries read PII columns (for the audit, by name).
    pub fn pii_access(&self) -> tessera_sql::pii::PiiAccess {
        tessera_sql::pii::PiiAccess {
            reader: self.pii_reader(),
            user: self.name.clone(),
        }
    }

    /// Whether the role holds `privilege` on `table` (`schema.table`).
    pub fn may(&self, privilege: Privilege, table: &str) -> bool {
        if self.superuser {
            return true;
        }
        let schema = table.split_once('.').map_or("public", |(s, _)| s);
        let all = format!("{schema}.*");
        self.grants
            .iter()
            .any(|g| g.privilege == privilege && (g.object == table || g.object == all))
    }
}

/// The parts of a SCRAM verifier.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl Verifier {
    /// A new verifier for `password` with a random salt.
    pub fn new(password: &str) -> Verifier {
        let salt: [u8; 16] = rand::random();
        Self::with_salt(password, &salt, ITERATIONS)
    }

    /// The verifier of `password` with a given salt and iteration count.
    pub fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let salted = pgwire::api::auth::sasl::scram::gen_salted_password(
            password,
            salt,
            iterations as usize,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: digest::digest(&digest::SHA256, &client_key)
                .as_ref()
                .to_vec(),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// PostgreSQL's text form.
    pub fn encode(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }

    /// Reads PostgreSQL's text form.
    pub fn decode(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(Verifier {
            iterations: iterations.parse().ok()?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?,
            server_key: B64.decode(server).ok()?,
        })
    }
}

/// HMAC-SHA-256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, msg).as_ref().to_vec()
}

/// The roles of one database.
#[derive(Debug, Clone)]
pub struct Roles {
    db: Database,
}

impl Roles {
    /// The roles stored in `db`.
    pub fn new(db: &Database) -> Roles {
        Roles { db: db.clone() }
    }

    /// The role named `name`.
    pub fn get(&self, name: &str) -> Option<Role> {
        let bytes = self.db.engine().extension(&format!("{PREFIX}{name}"))?;
        postcard::from_bytes(&bytes).ok()
    }

    /// Every role, by name.
    pub fn all(&self) -> Vec<Role> {
        self.db
            .engine()
            .extensions(PREFIX)
            .into_iter()
            .filter_map(|(_, b)| postcard::from_bytes(&b).ok())
            .collect()
    }

    /// Stores `role` (new or changed), durably.
    pub fn put(&self, role: &Role) -> Result<(), WireError> {
        let bytes = postcard::to_stdvec(role).map_err(|e| WireError::Internal(e.to_string()))?;
        self.db
            .engine()
            .set_extension(&format!("{PREFIX}{}", role.name), Some(bytes))?;
        Ok(())
    }

    /// Removes role `name`, durably.
    pub fn remove(&self, name: &str) -> Result<(), WireError> {
        self.db
            .engine()
            .set_extension(&format!("{PREFIX}{name}"), None)?;
        Ok(())
    }

    /// Stores a superuser `name` who logs in with `password`, durably.
    pub fn put_superuser(&self, name: &str, password: &str) -> Result<(), WireError> {
        self.put(&Role {
            name: name.to_string(),
            superuser: true,
            login: true,
            verifier: Verifier::new(password).encode(),
            grants: BTreeSet::new(),
        })
    }

    /// On a database without roles, creates the superuser `name` with
    /// `password` (or a generated one, returned so that it can be shown
    /// once). Returns `None` when roles exist already.
    pub fn bootstrap(
        &self,
        name: &str,
        password: Option<String>,
    ) -> Result<Option<String>, WireError> {
        if !self.all().is_empty() {
            return Ok(None);
        }
        let password = password.unwrap_or_else(generate_password);
        self.put_superuser(name, &password)?;
        // The owner the catalog shows of every object.
        self.db
            .engine()
            .set_extension(super::catalog::OWNER_KEY, Some(name.as_bytes().to_vec()))?;
        Ok(Some(password))
    }
}

/// A random password of 24 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    (0..24)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_round_trips() {
        let v = Verifier::new("pencil");
        let back = Verifier::decode(&v.encode());
        assert_eq!(
            back.map(|d| (d.stored_key, d.server_key)),
            Some((v.stored_key, v.server_key))
        );
        assert!(Verifier::decode("md5abc").is_none());
    }

    #[test]
    fn grants_on_a_schema_cover_its_tables() {
        let mut role = Role {
            name: "analyst".into(),
            superuser: false,
            login: true,
            verifier: String::new(),
            grants: BTreeSet::new(),
        };
        assert!(!role.may(Privilege::Select, "public.orders"));
        role.grants.insert(Grant {
            object: "public.*".into(),
            privilege: Privilege::Select,
        });
        assert!(role.may(Privilege::Select, "public.orders"));
        assert!(!role.may(Privilege::Insert, "public.orders"));
        assert!(!role.may(Privilege::Select, "crm.contacts"));
    }
}

/// `CREATE ROLE`, `ALTER ROLE`, `DROP ROLE`, `GRANT`, `REVOKE`: run by a
/// superuser (the caller checks), stored at once.
pub mod statements {
    use std::collections::BTreeSet;

    use tessera_sql::datafusion::sql::sqlparser::ast;

    use super::{Grant, Privilege, Role, Roles, Verifier};
    use crate::wire::WireError;

    fn name_of(n: &ast::ObjectName) -> String {
        match n.0.as_slice() {
            [p] => match p.as_ident() {
                Some(i) if i.quote_style.is_some() => i.value.clone(),
                Some(i) => i.value.to_lowercase(),
                None => p.to_string(),
            },
            _ => n.to_string(),
        }
    }

    fn ident(i: &ast::Ident) -> String {
        if i.quote_style.is_some() {
            i.value.clone()
        } else {
            i.value.to_lowercase()
        }
    }

    fn password(p: &ast::Password) -> Result<String, WireError> {
        match p {
            ast::Password::NullPassword => Ok(String::new()),
            ast::Password::Password(e) => match e {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) => Ok(Verifier::new(s).encode()),
                    _ => Err(WireError::InvalidParameter(
                        "PASSWORD takes a string literal".into(),
                    )),
                },
                _ => Err(WireError::InvalidParameter(
                    "PASSWORD takes a string literal".into(),
                )),
            },
        }
    }

    fn duplicate(name: &str) -> WireError {
        WireError::Engine(tessera_engine::EngineError::DuplicateObject(format!(
            "role \"{name}\" already exists"
        )))
    }

    /// `CREATE ROLE name [WITH] [LOGIN] [SUPERUSER] [PASSWORD '…']`.
    pub fn create(roles: &Roles, c: &ast::CreateRole) -> Result<&'static str, WireError> {
        for n in &c.names {
            let name = name_of(n);
            if roles.get(&name).is_some() {
                if c.if_not_exists {
                    continue;
                }
                return Err(duplicate(&name));
            }
            let verifier = match &c.password {
                Some(p) => password(p)?,
                None => String::new(),
            };
            roles.put(&Role {
                name,
                superuser: c.superuser.unwrap_or(false),
                login: c.login.unwrap_or(false),
                verifier,
                grants: BTreeSet::new(),
            })?;
        }
        Ok("CREATE ROLE")
    }

    fn existing(roles: &Roles, name: &str) -> Result<Role, WireError> {
        roles
            .get(name)
            .ok_or_else(|| WireError::UndefinedObject(format!("role \"{name}\" does not exist")))
    }

    /// `ALTER ROLE name [WITH] options` and `ALTER ROLE name RENAME TO new`.
    pub fn alter(
        roles: &Roles,
        name: &ast::Ident,
        op: &ast::AlterRoleOperation,
    ) -> Result<&'static str, WireError> {
        let name = ident(name);
        let mut role = existing(roles, &name)?;
        match op {
            ast::AlterRoleOperation::WithOptions { options } => {
                for o in options {
                    match o {
                        ast::RoleOption::Login(b) => role.login = *b,
                        ast::RoleOption::SuperUser(b) => role.superuser = *b,
                        ast::RoleOption::Password(p) => role.verifier = password(p)?,
                        other => {
                            return Err(WireError::Unsupported(format!(
                                "ALTER ROLE … {other}: Tessera's roles have LOGIN, SUPERUSER and PASSWORD"
                            )));
                        }
                    }
                }
                roles.put(&role)?;
            }
            ast::AlterRoleOperation::RenameRole { role_name } => {
                let new = ident(role_name);
                if roles.get(&new).is_some() {
                    return Err(duplicate(&new));
                }
                role.name = new;
                roles.put(&role)?;
                roles.remove(&name)?;
            }
            other => {
                return Err(WireError::Unsupported(format!("ALTER ROLE … {other}")));
            }
        }
        Ok("ALTER ROLE")
    }

    /// `DROP ROLE [IF EXISTS] name, …` (never the role running it).
    pub fn drop(
        roles: &Roles,
        names: &[ast::ObjectName],
        if_exists: bool,
        current: &str,
    ) -> Result<&'static str, WireError> {
        for n in names {
            let name = name_of(n);
            if name == current {
                return Err(WireError::Engine(
                    tessera_engine::EngineError::InvalidOption(
                        "the current user cannot be dropped".into(),
                    ),
                ));
            }
            if roles.get(&name).is_none() {
                if if_exists {
                    continue;
                }
                return Err(WireError::UndefinedObject(format!(
                    "role \"{name}\" does not exist"
                )));
            }
            roles.remove(&name)?;
        }
        Ok("DROP ROLE")
    }

    fn privileges(p: &ast::Privileges) -> Result<Vec<Privilege>, WireError> {
        match p {
            ast::Privileges::All { .. } => Ok(vec![
                Privilege::Select,
                Privilege::Insert,
                Privilege::Update,
                Privilege::Delete,
            ]),
            ast::Privileges::Actions(actions) => actions
                .iter()
                .map(|a| {
                    let word = a.to_string();
                    let word = word.split_whitespace().next().unwrap_or_default();
                    Privilege::parse(word).ok_or_else(|| {
                        WireError::Unsupported(format!(
                            "GRANT {a}: Tessera grants SELECT, INSERT, UPDATE and DELETE on tables"
                        ))
                    })
                })
                .collect(),
        }
    }

    fn objects(
        o: Option<&ast::GrantObjects>,
        default_schema: &str,
    ) -> Result<Vec<String>, WireError> {
        match o {
            Some(ast::GrantObjects::Tables(t)) => Ok(t
                .iter()
                .map(|n| {
                    let parts: Vec<String> =
                        n.0.iter().filter_map(|p| p.as_ident().map(ident)).collect();
                    match parts.as_slice() {
                        [t] => format!("{default_schema}.{t}"),
                        [.., s, t] => format!("{s}.{t}"),
                        [] => String::new(),
                    }
                })
                .collect()),
            Some(ast::GrantObjects::AllTablesInSchema { schemas }) => Ok(schemas
                .iter()
                .map(|s| format!("{}.*", name_of(s)))
                .collect()),
            _ => Err(WireError::Unsupported(
                "GRANT … ON: Tessera grants on tables or ALL TABLES IN SCHEMA".into(),
            )),
        }
    }

    fn grantees(g: &[ast::Grantee]) -> Result<Vec<String>, WireError> {
        g.iter()
            .map(|g| match &g.name {
                Some(ast::GranteeName::ObjectName(n)) => Ok(name_of(n)),
                _ => Err(WireError::Unsupported("GRANT … TO: name a role".into())),
            })
            .collect()
    }

    /// `GRANT privileges ON objects TO roles` (`revoke`: `REVOKE … FROM`).
    /// `GRANT pii_reader TO …` / `REVOKE pii_reader FROM …`.
    pub fn grant_pii(
        roles: &Roles,
        to: &[ast::Ident],
        grant: bool,
    ) -> Result<&'static str, WireError> {
        let mut changed = Vec::new();
        for name in to {
            let mut role = existing(roles, &ident(name))?;
            let g = Grant {
                object: super::PII_OBJECT.to_string(),
                privilege: Privilege::PiiRead,
            };
            if grant {
                role.grants.insert(g);
            } else {
                role.grants.remove(&g);
            }
            changed.push(role);
        }
        for role in &changed {
            roles.put(role)?;
        }
        Ok(if grant { "GRANT" } else { "REVOKE" })
    }

    pub fn grant(
        roles: &Roles,
        privs: &ast::Privileges,
        on: Option<&ast::GrantObjects>,
        to: &[ast::Grantee],
        default_schema: &str,
        revoke: bool,
    ) -> Result<&'static str, WireError> {
        let privs = privileges(privs)?;
        let objects = objects(on, default_schema)?;
        let mut changed = Vec::new();
        for name in grantees(to)? {
            let mut role = existing(roles, &name)?;
            for o in &objects {
                for p in &privs {
                    let g = Grant {
                        object: o.clone(),
                        privilege: *p,
                    };
                    if revoke {
                        role.grants.remove(&g);
                    } else {
                        role.grants.insert(g);
                    }
                }
            }
            changed.push(role);
        }
        for role in &changed {
            roles.put(role)?;
        }
        Ok(if revoke { "REVOKE" } else { "GRANT" })
    }
}
