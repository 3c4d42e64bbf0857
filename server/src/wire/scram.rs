//! The start of a connection: TLS policy, connection limit, and
//! SCRAM-SHA-256 authentication against the verifiers of [`super::roles`].
//!
//! The exchange (RFC 5802, RFC 7677, PostgreSQL's SASL framing):
//! 1. the client's startup message names the user; the server answers
//!    `AuthenticationSASL` offering `SCRAM-SHA-256` only;
//! 2. client-first `n,,n=,r=<client nonce>`; the server answers
//!    `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`;
//! 3. client-final `c=biws,r=<nonce>,p=<proof>`: the server recomputes
//!    ClientSignature = HMAC(StoredKey, AuthMessage), recovers ClientKey =
//!    proof XOR ClientSignature and accepts when H(ClientKey) = StoredKey,
//!    then proves itself with `v=HMAC(ServerKey, AuthMessage)`.
//!
//! An unknown user goes through the same exchange with a salt derived from
//! its name and fails at the proof, like a wrong password (SQLSTATE 28P01):
//! a client cannot tell which users exist.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{StartupHandler, finish_authentication, protocol_negotiation};
use pgwire::api::{ClientInfo, PgWireConnectionState, PidSecretKeyGenerator};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use ring::digest;
use tokio::sync::Mutex;

use super::roles::{Verifier, hmac_sha256};
use super::session::Session;
use super::{Shared, fatal};

const MECHANISM: &str = "SCRAM-SHA-256";

#[derive(Debug)]
enum State {
    Initial,
    ServerFirstSent {
        user: String,
        verifier: Verifier,
        known: bool,
        nonce: String,
        auth_prefix: String,
    },
    Done,
}

/// One connection's authentication (a new one per connection).
#[derive(Debug)]
pub struct Startup {
    shared: Arc<Shared>,
    state: Mutex<State>,
}

impl Startup {
    /// The start of a new connection.
    pub fn new(shared: Arc<Shared>) -> Startup {
        Startup {
            shared,
            state: Mutex::new(State::Initial),
        }
    }
}

fn invalid(message: &str) -> PgWireError {
    PgWireError::InvalidScramMessage(message.to_string())
}

/// `name=value` attributes of a SCRAM message.
fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                if self.shared.config.require_tls && !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "this server accepts only TLS connections: connect with sslmode=require",
                    ));
                }
                if client.metadata().get(pgwire::api::METADATA_USER).is_none() {
                    return Err(fatal("28000", "no user name was given"));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![MECHANISM.to_string()],
                    )))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let mut state = self.state.lock().await;
                match std::mem::replace(&mut *state, State::Done) {
                    State::Initial => {
                        let initial = msg.into_sasl_initial_response()?;
                        if initial.auth_method != MECHANISM {
                            return Err(PgWireError::UnsupportedSASLAuthMethod(
                                initial.auth_method,
                            ));
                        }
                        let data = initial.data.ok_or_else(|| invalid("empty client-first"))?;
                        let text = std::str::from_utf8(&data).map_err(|_| invalid("not UTF-8"))?;
                        // gs2-header: channel binding flag, authzid, then the bare message.
                        let mut parts = text.splitn(3, ',');
                        let flag = parts.next().unwrap_or_default();
                        let _authzid = parts.next();
                        let bare = parts
                            .next()
                            .ok_or_else(|| invalid("no client-first-bare"))?;
                        if flag.starts_with('p') {
                            return Err(invalid("channel binding is not offered by this server"));
                        }
                        let client_nonce =
                            attribute(bare, 'r').ok_or_else(|| invalid("no client nonce"))?;
                        let user = client
                            .metadata()
                            .get(pgwire::api::METADATA_USER)
                            .cloned()
                            .unwrap_or_default();
                        let role = self.shared.roles.get(&user);
                        let stored = role.as_ref().and_then(|r| Verifier::decode(&r.verifier));
                        let known = stored.is_some();
                        let verifier = stored.unwrap_or_else(|| self.shared.mock_verifier(&user));
                        let server_nonce: [u8; 18] = rand::random();
                        let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
                        let server_first = format!(
                            "r={nonce},s={},i={}",
                            B64.encode(&verifier.salt),
                            verifier.iterations
                        );
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(
                                    server_first.clone().into_bytes().into(),
                                ),
                            ))
                            .await?;
                        *state = State::ServerFirstSent {
                            user,
                            verifier,
                            known,
                            nonce,
                            auth_prefix: format!("{bare},{server_first}"),
                        };
                    }
                    State::ServerFirstSent {
                        user,
                        verifier,
                        known,
                        nonce,
                        auth_prefix,
                    } => {
                        let response = msg.into_sasl_response()?;
                        let text = std::str::from_utf8(&response.data)
                            .map_err(|_| invalid("not UTF-8"))?;
                        let (without_proof, proof) = text
                            .rsplit_once(",p=")
                            .ok_or_else(|| invalid("no proof in client-final"))?;
                        if attribute(without_proof, 'r') != Some(nonce.as_str()) {
                            return Err(invalid("the nonce does not match"));
                        }
                        let proof = B64.decode(proof).map_err(|_| invalid("bad proof"))?;
                        let auth_message = format!("{auth_prefix},{without_proof}");
                        let signature = hmac_sha256(&verifier.stored_key, auth_message.as_bytes());
                        let valid = known && proof.len() == signature.len() && {
                            let client_key: Vec<u8> =
                                proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                            let hashed = digest::digest(&digest::SHA256, &client_key);
                            constant_time_eq(hashed.as_ref(), &verifier.stored_key)
                        };
                        if !valid {
                            return Err(PgWireError::InvalidPassword(user));
                        }
                        let Some(role) = self.shared.roles.get(&user) else {
                            return Err(PgWireError::InvalidPassword(user));
                        };
                        if !role.login {
                            return Err(fatal(
                                "28000",
                                &format!("role \"{user}\" is not permitted to log in"),
                            ));
                        }
                        let server_signature =
                            hmac_sha256(&verifier.server_key, auth_message.as_bytes());
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLFinal(
                                    format!("v={}", B64.encode(server_signature))
                                        .into_bytes()
                                        .into(),
                                ),
                            ))
                            .await?;
                        let Some(slot) = self.shared.connection_slot() else {
                            return Err(fatal(
                                "53300",
                                &format!(
                                    "sorry, too many clients already (max_connections = {})",
                                    self.shared.config.max_connections
                                ),
                            ));
                        };
                        let (pid, secret) = self.shared.pids().generate(client);
                        client.set_pid_and_secret_key(pid, secret.clone());
                        let session = Session::new(&self.shared, role, client.metadata(), slot);
                        let (handle, guard) = self.shared.connections.register(pid, secret.clone());
                        client.session_extensions().insert(handle);
                        client.session_extensions().insert(guard);
                        client
                            .session_extensions()
                            .insert(self.shared.sessions.register(pid, &secret, &session));
                        client.session_extensions().insert(session);
                        finish_authentication(client, self.shared.as_ref()).await?;
                    }
                    State::Done => return Err(PgWireError::InvalidSASLState),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Equality that takes as long whichever byte differs.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Shared {
    /// A verifier for a user that does not exist: a stable salt derived from
    /// the name, and keys nobody can match.
    fn mock_verifier(&self, user: &str) -> Verifier {
        let salt = hmac_sha256(&self.mock_secret, user.as_bytes());
        Verifier {
            iterations: super::roles::ITERATIONS,
            salt: salt[..16].to_vec(),
            stored_key: hmac_sha256(&self.mock_secret, b"stored"),
            server_key: hmac_sha256(&self.mock_secret, b"server"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange, checked with this module's arithmetic.
    #[test]
    fn rfc7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap_or_default();
        let v = Verifier::with_salt("pencil", &salt, 4096);
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
                    r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
                    c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = B64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap_or_default();
        let signature = hmac_sha256(&v.stored_key, auth.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        assert_eq!(
            digest::digest(&digest::SHA256, &client_key).as_ref(),
            v.stored_key.as_slice()
        );
        assert_eq!(
            B64.encode(hmac_sha256(&v.server_key, auth.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(attribute("n=user,r=abc", 'r'), Some("abc"));
    }
}
