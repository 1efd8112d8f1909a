"""The local cluster's security: a CA of its own, TLS for every listener, SCRAM users per service.

``ridestream kafka start --secure`` calls :func:`provision` once per cluster home. It writes,
under ``home/secure`` (a 0700 folder, every file 0600):

- ``ca.pem`` / ``ca.key``: the CA every client trusts and that signed the node certificate;
- ``node.pem``: the nodes' key and certificate (``CN=ridestream-node``, for 127.0.0.1 and
  localhost): the TLS side of the client listener, and the nodes' identity to one another on
  the controller listener (mutual TLS);
- ``users.json``: a generated SCRAM-SHA-512 password per principal (:data:`PRINCIPALS`);
- ``clients/<principal>.properties``: the librdkafka options a client of that principal needs
  (``RIDESTREAM_KAFKA_CONFIG_FILE`` points a service at one).

The users exist from the first start: they are written into the metadata log when the storage is
formatted (KIP-900), so nodes authenticate to one another before any of them answers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
NODE_SUBJECT = "ridestream-node"
# Who talks to the cluster, one principal each: services get only what their role needs
# (ridestream.kafka.acls), ``operator`` runs the command-line tools, ``admin`` is the nodes'
# own identity on the client listener and manages ACLs.
PRINCIPALS = (ADMIN, "operator", "publisher", "gateway", "predictor", "decisions", "subscriber")
CERT_DAYS = 825


def _private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True)
class SecureFiles:
    """Where a cluster's CA, node certificate, passwords and client configs live."""

    root: Path

    @classmethod
    def of(cls, home: Path) -> SecureFiles:
        """The files of the cluster in ``home``."""
        return cls(home / "secure")

    @property
    def ca_cert(self) -> Path:
        """The CA certificate clients trust (PEM)."""
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's private key (PEM)."""
        return self.root / "ca.key"

    @property
    def node_pem(self) -> Path:
        """The nodes' private key and certificate chain, as Kafka's PEM key store reads them."""
        return self.root / "node.pem"

    @property
    def users(self) -> Path:
        """Principal → SCRAM password (JSON)."""
        return self.root / "users.json"

    def client_config(self, principal: str) -> Path:
        """The librdkafka options of one principal (``key=value`` lines)."""
        return self.root / "clients" / f"{principal}.properties"

    @property
    def provisioned(self) -> bool:
        """True when every file exists (a cluster is provisioned once, then reused)."""
        return all(p.exists() for p in (self.ca_cert, self.node_pem, self.users))

    def passwords(self) -> dict[str, str]:
        """Principal → password."""
        passwords: dict[str, str] = json.loads(self.users.read_text())
        return passwords


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificates(host: str) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, CA key, node key + certificate + CA certificate), all PEM."""
    now = dt.datetime.now(dt.UTC)
    valid = {"not_valid_before": now - dt.timedelta(minutes=5),
             "not_valid_after": now + dt.timedelta(days=CERT_DAYS)}  # fmt: skip
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder(
            subject_name=_name("ridestream-ca"), issuer_name=_name("ridestream-ca")
        )
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    node_key = ec.generate_private_key(ec.SECP256R1())
    node = (
        x509.CertificateBuilder(subject_name=_name(NODE_SUBJECT), issuer_name=ca.subject)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    ca_key_pem = ca_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    node_pem = (
        node_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + node.public_bytes(pem)
        + ca_pem
    )
    return ca_pem, ca_key_pem, node_pem


def client_properties(files: SecureFiles, principal: str, password: str) -> str:
    """The librdkafka options of a principal on the SASL_SSL listener."""
    return "\n".join(
        [
            f"# {principal} on the local secured cluster; written by ridestream kafka start --secure",
            "security.protocol=SASL_SSL",
            f"sasl.mechanism={MECHANISM}",
            f"sasl.username={principal}",
            f"sasl.password={password}",
            f"ssl.ca.location={files.ca_cert}",
            "",
        ]
    )


def provision(home: Path, host: str) -> SecureFiles:
    """Generate the CA, the node certificate, every principal's password and client config,
    once; an already provisioned home is returned as it is."""
    files = SecureFiles.of(home)
    if files.provisioned:
        return files
    ca_pem, ca_key_pem, node_pem = _certificates(host)
    _private(files.ca_cert, ca_pem)
    _private(files.ca_key, ca_key_pem)
    _private(files.node_pem, node_pem)
    passwords = {principal: secrets.token_urlsafe(24) for principal in PRINCIPALS}
    for principal, password in passwords.items():
        _private(
            files.client_config(principal), client_properties(files, principal, password).encode()
        )
    _private(files.users, json.dumps(passwords, indent=2).encode())
    return files


def scram_arguments(files: SecureFiles) -> list[str]:
    """``kafka-storage format`` arguments that create every principal's SCRAM credential."""
    arguments = []
    for principal, password in files.passwords().items():
        arguments += ["--add-scram", f"{MECHANISM}=[name={principal},password={password}]"]
    return arguments


def node_security_properties(files: SecureFiles) -> list[str]:
    """The server.properties lines of a secured node.

    Clients and brokers meet on SASL_SSL (SCRAM-SHA-512, the brokers as ``admin``); controllers
    on mutual TLS, since SCRAM credentials live in the metadata log the controllers serve. The
    StandardAuthorizer denies what no ACL allows; ``admin`` and the nodes' certificate are the
    only super users.
    """
    admin_password = files.passwords()[ADMIN]
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{admin_password}";'
    )
    return [
        "sasl.enabled.mechanisms=" + MECHANISM,
        "sasl.mechanism.inter.broker.protocol=" + MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
        "listener.name.controller.ssl.client.auth=required",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={files.node_pem}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={files.ca_cert}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{ADMIN};User:CN={NODE_SUBJECT}",
    ]
