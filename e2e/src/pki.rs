//! The environment's certificates: one CA that signs the apiserver's serving certificate and the
//! client certificates (admin, controller-manager, kubelet), plus the ServiceAccount signing key.
//! ECDSA P-256 throughout; Go and rustls both accept it.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// A client identity: certificate CN is the user name, each O a group.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// File stem (`<stem>.crt`, `<stem>.key`).
    pub stem: &'static str,
    /// User name.
    pub user: &'static str,
    /// Groups.
    pub groups: &'static [&'static str],
}

/// The identities the environment issues certificates for.
pub const IDENTITIES: &[ClientIdentity] = &[
    ClientIdentity {
        stem: "admin",
        user: "admin",
        groups: &["system:masters"],
    },
    ClientIdentity {
        stem: "controller-manager",
        user: "system:kube-controller-manager",
        groups: &[],
    },
    ClientIdentity {
        stem: "kubelet",
        user: "weft-kubelet",
        groups: &["system:masters"],
    },
];

/// Paths of the generated files.
#[derive(Debug, Clone)]
pub struct Pki {
    /// Directory holding everything.
    pub dir: PathBuf,
}

impl Pki {
    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// The CA key (also used by the controller-manager's CSR signer).
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// The apiserver's serving certificate.
    pub fn apiserver_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    /// The apiserver's serving key.
    pub fn apiserver_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    /// ServiceAccount token signing key (private).
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    /// ServiceAccount token verification key (public).
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }
    /// Client certificate of an identity from [`IDENTITIES`].
    pub fn client_cert(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.crt"))
    }
    /// Client key of an identity from [`IDENTITIES`].
    pub fn client_key(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.key"))
    }
}

fn pki_err(e: rcgen::Error) -> Error {
    Error::Pki(e.to_string())
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Generates the CA, the apiserver serving certificate, the client certificates of [`IDENTITIES`]
/// and the ServiceAccount key pair into `dir`.
pub fn generate(dir: &Path) -> Result<Pki, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let pki = Pki {
        dir: dir.to_path_buf(),
    };

    let ca_key = KeyPair::generate().map_err(pki_err)?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("weft-e2e-ca", &[]);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(pki_err)?;
    write(&pki.ca_cert(), &ca_cert.pem())?;
    write(&pki.ca_key(), &ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca_params, ca_key);

    let serving_key = KeyPair::generate().map_err(pki_err)?;
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "10.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ])
    .map_err(pki_err)?;
    serving.distinguished_name = name("kube-apiserver", &[]);
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = serving.signed_by(&serving_key, &issuer).map_err(pki_err)?;
    write(&pki.apiserver_cert(), &cert.pem())?;
    write(&pki.apiserver_key(), &serving_key.serialize_pem())?;

    for id in IDENTITIES {
        let key = KeyPair::generate().map_err(pki_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(id.user, id.groups);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).map_err(pki_err)?;
        write(&pki.client_cert(id.stem), &cert.pem())?;
        write(&pki.client_key(id.stem), &key.serialize_pem())?;
    }

    let sa = KeyPair::generate().map_err(pki_err)?;
    write(&pki.sa_key(), &sa.serialize_pem())?;
    write(&pki.sa_pub(), &sa.public_key_pem())?;
    Ok(pki)
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for org in organizations {
        dn.push(DnType::OrganizationName, *org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_file_as_pem() {
        let dir = weft_testkit::TempDir::new("pki").unwrap();
        let pki = generate(dir.path()).unwrap();
        let ca = std::fs::read_to_string(pki.ca_cert()).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        assert!(
            std::fs::read_to_string(pki.sa_pub())
                .unwrap()
                .contains("BEGIN PUBLIC KEY")
        );
        assert!(
            std::fs::read_to_string(pki.sa_key())
                .unwrap()
                .contains("PRIVATE KEY")
        );
        for id in IDENTITIES {
            let cert = std::fs::read_to_string(pki.client_cert(id.stem)).unwrap();
            assert!(cert.contains("BEGIN CERTIFICATE"));
            assert!(
                std::fs::read_to_string(pki.client_key(id.stem))
                    .unwrap()
                    .contains("PRIVATE KEY")
            );
        }
    }
}
