//! Trusting the certificates an operator names with `--ca-file` as certificates, not only as
//! issuers. The usual way to make a receiver's certificate by hand, `openssl req -x509`, gives a
//! self-signed certificate marked CA:TRUE, which a standard verifier refuses as an end entity
//! (`CaUsedAsEndEntity`) even when it is the very certificate the operator named. Here a
//! receiver that presents exactly one of the named certificates is accepted when the
//! certificate names the host; every other certificate goes through rustls' own WebPKI
//! verifier, against the public roots and the named certificates as issuers. The TLS handshake
//! signatures are checked the same way in both cases.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

#[derive(Debug)]
pub struct PinnedOrWebPki {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedOrWebPki {
    pub fn new(
        pinned: Vec<CertificateDer<'static>>,
        webpki: Arc<WebPkiServerVerifier>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        PinnedOrWebPki {
            pinned,
            webpki,
            algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|named| named.as_ref() == end_entity.as_ref())
        {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What to do about a certificate the relay refused, to append to the recorded failure.
pub fn advice(error: &str) -> Option<&'static str> {
    if error.contains("UnknownIssuer") || error.contains("CaUsedAsEndEntity") {
        Some("(if the receiver's certificate is your own, name it or its CA with --ca-file; see docs/relay.md, \"Self-signed receivers\")")
    } else if error.contains("NotValidForName") {
        Some("(the certificate does not name this host: give it a subjectAltName for the host or address in the endpoint URL)")
    } else {
        None
    }
}
