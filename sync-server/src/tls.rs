//! HTTPS with rustls: the acceptor both servers share lives in `http-serve`
//! ([`http_serve::tls`]); HQ uses it over a plain `TcpListener`.

pub use http_serve::tls::{TlsError, TlsListener, server_config};
