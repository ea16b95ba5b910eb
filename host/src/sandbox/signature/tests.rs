//! The signature format, keys and policy against `wasmsign2`'s and OpenSSL's own output, and
//! every way a signed file can be broken.

use super::format::*;
use super::keys::*;
use super::*;
use std::path::{Path, PathBuf};

/// A throwaway key pair made with `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`.
const OPENSSL_SECRET: &str = "-----BEGIN PRIVATE KEY-----\n\
    MC4CAQAwBQYDK2VwBCIEIFVh+abkj+zxDYTlyl5MscZHDhT5/mltj5Z9mJBwQB7M\n\
    -----END PRIVATE KEY-----\n";
const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\n\
    MCowBQYDK2VwAyEAvzK8UO9Bf5ptdFICpcRb4n0RvpqWwVfyGJsLHtHGhjQ=\n\
    -----END PUBLIC KEY-----\n";
/// `echo -n key_id | openssl dgst -sha256 -mac HMAC -macopt hexkey:<public key>`, first 12 bytes.
const OPENSSL_KEY_ID: &str = "2f98c19329dbca1c9b0a6288";

fn pair(seed: u8) -> (SigningKey, TrustedKey) {
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
    let trusted = TrustedKey { id: KeyId::of(&kp.pk), key: kp.pk, file: PathBuf::from(format!("key-{seed}.pub")) };
    (SigningKey { secret: kp.sk }, trusted)
}

fn trusting(keys: &[&TrustedKey]) -> TrustedKeys {
    TrustedKeys { keys: keys.iter().map(|k| (*k).clone()).collect() }
}

fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_slice(&mut body, name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = vec![0];
    put_slice(&mut out, &body);
    out
}

/// A small component-shaped file: header, a custom section, two opaque sections.
fn component() -> Vec<u8> {
    let mut wasm = COMPONENT_HEADER.to_vec();
    wasm.extend(custom_section("producers", b"blocklet-migrate tests"));
    wasm.extend([1, 3, 0xaa, 0xbb, 0xcc]);
    wasm.extend([7, 200, 1]);
    wasm.extend((0..200u8).collect::<Vec<_>>());
    wasm
}

/// The byte offset where the signed content starts (just after the signature section).
fn content_start(signed: &[u8]) -> usize {
    sections(signed).unwrap()[0].end
}

#[test]
fn a_signed_component_verifies_with_its_key_and_keeps_its_content() {
    let (key, trusted) = pair(1);
    let wasm = component();
    let signed = sign(&wasm, &key).unwrap();
    let signer = verify(&signed, &trusting(&[&trusted])).unwrap();
    assert_eq!(signer, Signer { key_id: trusted.id.clone(), key_file: trusted.file.clone() });
    assert_eq!(&signed[..8], &wasm[..8]);
    assert_eq!(&signed[content_start(&signed)..], &wasm[8..], "signing changed the content");
}

#[test]
fn the_bundled_component_signs_and_verifies() {
    let (key, trusted) = pair(2);
    let signed = sign(crate::sandbox::BUNDLED_COMPONENT, &key).unwrap();
    assert_eq!(verify(&signed, &trusting(&[&trusted])).unwrap().key_id, trusted.id);
    assert_eq!(verify(crate::sandbox::BUNDLED_COMPONENT, &trusting(&[&trusted])), Err(Refusal::Unsigned));
}

#[test]
fn re_signing_replaces_the_signature() {
    let (first, first_trusted) = pair(3);
    let (second, second_trusted) = pair(4);
    let twice = sign(&sign(&component(), &first).unwrap(), &second).unwrap();
    assert_eq!(sections(&twice).unwrap().iter().filter(|s| s.is_signature).count(), 1);
    assert_eq!(verify(&twice, &trusting(&[&second_trusted])).unwrap().key_id, second_trusted.id);
    assert_eq!(
        verify(&twice, &trusting(&[&first_trusted])),
        Err(Refusal::Untrusted { key_ids: vec![second_trusted.id.clone()] })
    );
}

#[test]
fn an_unsigned_component_is_refused() {
    let (_, trusted) = pair(5);
    assert_eq!(verify(&component(), &trusting(&[&trusted])), Err(Refusal::Unsigned));
    assert_eq!(verify(&component(), &TrustedKeys::default()), Err(Refusal::Unsigned));
}

#[test]
fn any_changed_byte_is_refused() {
    let (key, trusted) = pair(6);
    let keys = trusting(&[&trusted]);
    let signed = sign(&component(), &key).unwrap();
    for i in 0..signed.len() {
        let mut tampered = signed.clone();
        tampered[i] ^= 0x01;
        let verdict = verify(&tampered, &keys);
        assert!(verdict.is_err(), "flipping byte {i} of {} was not noticed", signed.len());
    }
    // Content bytes: the refusal says the trusted key's signature no longer holds.
    let mut tampered = signed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    assert!(matches!(verify(&tampered, &keys), Err(Refusal::DoesNotVerify { key_id, .. }) if key_id == trusted.id));
    // A signature byte: the key id still names the trusted key, the signature is not its.
    let start = content_start(&signed);
    let mut tampered = signed.clone();
    tampered[start - 1] ^= 0x01;
    assert!(matches!(verify(&tampered, &keys), Err(Refusal::DoesNotVerify { key_id, .. }) if key_id == trusted.id));
}

#[test]
fn bytes_added_or_removed_are_refused() {
    let (key, trusted) = pair(7);
    let keys = trusting(&[&trusted]);
    let signed = sign(&component(), &key).unwrap();
    let mut appended = signed.clone();
    appended.extend(custom_section("extra", b"smuggled"));
    assert!(matches!(verify(&appended, &keys), Err(Refusal::DoesNotVerify { .. })));
    let mut cut = signed.clone();
    cut.truncate(cut.len() - 203);
    assert_eq!(sections(&cut).unwrap().last().unwrap().end, cut.len(), "cut at a section boundary");
    assert!(matches!(verify(&cut, &keys), Err(Refusal::DoesNotVerify { .. })));
}

#[test]
fn a_signature_by_another_key_is_refused_naming_its_key_id() {
    let (stranger, stranger_key) = pair(8);
    let (_, trusted) = pair(9);
    let signed = sign(&component(), &stranger).unwrap();
    let refusal = verify(&signed, &trusting(&[&trusted])).unwrap_err();
    assert_eq!(refusal, Refusal::Untrusted { key_ids: vec![stranger_key.id.clone()] });
    assert!(refusal.to_string().contains(&stranger_key.id.to_string()), "{refusal}");
    assert!(refusal.allowed_unsigned());
}

#[test]
fn a_forged_key_id_does_not_make_a_signature_trusted() {
    let (stranger, _) = pair(10);
    let (_, trusted) = pair(11);
    let mut signed = sign(&component(), &stranger).unwrap();
    // The key id is the 12 bytes just before the algorithm byte and the 64-byte signature.
    let start = content_start(&signed);
    let id_at = start - 64 - 1 - 1 - 12;
    signed[id_at..id_at + 12].copy_from_slice(&trusted.id.0);
    let refusal = verify(&signed, &trusting(&[&trusted])).unwrap_err();
    assert!(matches!(&refusal, Refusal::DoesNotVerify { key_id, .. } if *key_id == trusted.id), "{refusal:?}");
    assert!(!refusal.allowed_unsigned());
}

#[test]
fn a_truncated_signature_section_is_refused() {
    let (key, trusted) = pair(12);
    let keys = trusting(&[&trusted]);
    let signed = sign(&component(), &key).unwrap();
    let start = content_start(&signed);
    // The file ends inside the signature section.
    for cut in [9, 10, 12, 20, start - 1] {
        let refusal = verify(&signed[..cut], &keys).unwrap_err();
        assert!(matches!(refusal, Refusal::Malformed(_)), "cut at {cut}: {refusal:?}");
    }
    // The section's declared size is shorter than its payload: the signature is cut short.
    let mut short = signed.clone();
    let body = (u32::from(short[9]) & 0x7f) | ((u32::from(short[10]) & 0x7f) << 7);
    assert!(short[9] & 0x80 != 0 && short[10] & 0x80 == 0, "a two-byte section size");
    let shorter = body - 10;
    short[9] = (shorter & 0x7f) as u8 | 0x80;
    short[10] = (shorter >> 7) as u8;
    let refusal = verify(&short, &keys).unwrap_err();
    assert!(matches!(refusal, Refusal::Malformed(_)), "{refusal:?}");
}

#[test]
fn two_signature_sections_are_refused() {
    let (key, trusted) = pair(13);
    let keys = trusting(&[&trusted]);
    let signed = sign(&component(), &key).unwrap();
    let start = content_start(&signed);
    let mut doubled = signed[..start].to_vec();
    doubled.extend_from_slice(&signed[8..]);
    let refusal = verify(&doubled, &keys).unwrap_err();
    assert!(matches!(&refusal, Refusal::Malformed(m) if m.contains("2 signature sections")), "{refusal:?}");
    assert!(!refusal.allowed_unsigned());
}

#[test]
fn a_signature_section_after_other_sections_is_refused() {
    let (key, trusted) = pair(14);
    let wasm = component();
    let signed = sign(&wasm, &key).unwrap();
    let start = content_start(&signed);
    let mut moved = wasm[..8].to_vec();
    moved.extend_from_slice(&signed[start..]);
    moved.extend_from_slice(&signed[8..start]);
    let refusal = verify(&moved, &trusting(&[&trusted])).unwrap_err();
    assert!(matches!(&refusal, Refusal::Malformed(m) if m.contains("not the first section")), "{refusal:?}");
    // In the middle, too.
    let mut middle = wasm[..8].to_vec();
    middle.extend(custom_section("producers", b"blocklet-migrate tests"));
    middle.extend_from_slice(&signed[8..start]);
    middle.extend_from_slice(&wasm[8 + custom_section("producers", b"blocklet-migrate tests").len()..]);
    assert!(matches!(verify(&middle, &trusting(&[&trusted])), Err(Refusal::Malformed(_))));
}

#[test]
fn a_core_module_or_a_truncated_file_is_malformed() {
    let (_, trusted) = pair(15);
    let keys = trusting(&[&trusted]);
    let mut module = component();
    module[4..8].copy_from_slice(&[1, 0, 0, 0]);
    assert!(matches!(verify(&module, &keys), Err(Refusal::Malformed(m)) if m.contains("not a WebAssembly component")));
    assert!(matches!(verify(b"\0as", &keys), Err(Refusal::Malformed(_))));
    // A section declaring 4 GiB in a small file is refused without allocating it.
    let mut huge = COMPONENT_HEADER.to_vec();
    huge.extend([0, 0xff, 0xff, 0xff, 0xff, 0x0f, 9]);
    assert!(matches!(verify(&huge, &keys), Err(Refusal::Malformed(m)) if m.contains("truncated")));
    assert!(sign(&huge, &pair(15).0).is_err());
}

#[test]
fn openssl_keys_load_and_their_key_id_is_wasmsign2s() {
    let dir = tempfile::tempdir().unwrap();
    let (secret_file, public_file) = (dir.path().join("k.key"), dir.path().join("k.pub"));
    std::fs::write(&secret_file, OPENSSL_SECRET).unwrap();
    std::fs::write(&public_file, OPENSSL_PUBLIC).unwrap();
    let key = SigningKey::from_file(&secret_file).unwrap();
    let trusted = TrustedKey::from_file(&public_file).unwrap();
    assert_eq!(trusted.id.to_string(), OPENSSL_KEY_ID);
    assert_eq!(key.key_id(), trusted.id);
    let signed = sign(&component(), &key).unwrap();
    assert_eq!(verify(&signed, &trusting(&[&trusted])).unwrap().key_file, public_file);
    // A secret key is not a public key, and the reverse.
    assert!(TrustedKey::from_file(&secret_file).unwrap_err().contains("k.key"));
    assert!(SigningKey::from_file(&public_file).unwrap_err().contains("k.pub"));
}

#[test]
fn keygen_writes_a_pair_that_signs_and_verifies_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("release");
    let (secret_file, public_file, id) = keygen(&prefix).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777, 0o600);
    let key = SigningKey::from_file(&secret_file).unwrap();
    let trusted = TrustedKey::from_file(&public_file).unwrap();
    assert_eq!((key.key_id(), trusted.id.clone()), (id.clone(), id));
    let signed = sign(&component(), &key).unwrap();
    assert!(verify(&signed, &trusting(&[&trusted])).is_ok());
    let before = std::fs::read(&secret_file).unwrap();
    assert!(keygen(&prefix).unwrap_err().contains("already exists"));
    assert_eq!(std::fs::read(&secret_file).unwrap(), before);
}

#[test]
fn the_policy_admits_unsigned_components_only_with_allow_unsigned() {
    let (key, trusted) = pair(16);
    let (stranger, _) = pair(17);
    let file = Path::new("/opt/x.wasm");
    let strict = Policy { trusted: trusting(&[&trusted]), allow_unsigned: false };
    let lenient = Policy { allow_unsigned: true, ..strict.clone() };
    let unsigned = component();
    let err = strict.admit(file, &unsigned).unwrap_err();
    assert!(err.contains("/opt/x.wasm") && err.contains("unsigned") && err.contains("--allow-unsigned"), "{err}");
    let admitted = lenient.admit(file, &unsigned).unwrap();
    assert_eq!(admitted, Admitted::Unverified(Refusal::Unsigned));
    assert!(admitted.warning(file).unwrap().contains("/opt/x.wasm"));
    let foreign = sign(&unsigned, &stranger).unwrap();
    assert!(strict.admit(file, &foreign).unwrap_err().contains("not a trusted key"));
    assert!(matches!(lenient.admit(file, &foreign), Ok(Admitted::Unverified(Refusal::Untrusted { .. }))));
    let signed = sign(&unsigned, &key).unwrap();
    let admitted = lenient.admit(file, &signed).unwrap();
    assert!(matches!(admitted, Admitted::Signed(_)) && admitted.warning(file).is_none());
    // Tampered: refused even with --allow-unsigned.
    let mut tampered = signed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(lenient.admit(file, &tampered).unwrap_err().contains("does not verify"));
}

#[test]
fn hmac_sha256_matches_rfc_4231() {
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
