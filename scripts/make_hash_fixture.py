#!/usr/bin/env python3
"""Writes tests/fixtures/imported_hashes.jsonl: one account per imported-hash format, each
hash made by the library that owns the format, with its plaintext beside it so the
tests can verify it. Run once; the output is committed (CI needs none of these packages).

    pip install django==5.2.19 argon2-cffi==25.1.0 bcrypt==5.0.0 passlib==1.7.4
    python3 scripts/make_hash_fixture.py > tests/fixtures/imported_hashes.jsonl
"""
import hashlib
import json
import secrets

import django
from django.conf import settings

settings.configure(
    PASSWORD_HASHERS=[
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
        "django.contrib.auth.hashers.BCryptPasswordHasher",
        "django.contrib.auth.hashers.ScryptPasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
)
django.setup()
from django.contrib.auth.hashers import make_password  # noqa: E402

import argon2  # noqa: E402
import bcrypt  # noqa: E402
from passlib.hash import scrypt as passlib_scrypt  # noqa: E402


def line(fmt, password, hash_, weak=False, source=""):
    print(json.dumps({"format": fmt, "email": f"{fmt.replace('_', '-')}@example.com", "password": password,
                      "password_hash": hash_, "weak": weak, "made_by": source}))


def pw():
    return "imported " + secrets.token_urlsafe(12)


# Django's own hashers, with Django's default parameters.
for fmt, hasher in [("pbkdf2_sha256", "pbkdf2_sha256"), ("pbkdf2_sha1", "pbkdf2_sha1"), ("django_argon2", "argon2"),
                    ("bcrypt_sha256", "bcrypt_sha256"), ("django_bcrypt", "bcrypt"), ("django_scrypt", "scrypt")]:
    p = pw()
    line(fmt, p, make_password(p, hasher=hasher), source=f"Django {django.get_version()} make_password(hasher={hasher!r})")
p = pw()
line("md5", p, make_password(p, hasher="md5"), weak=True, source=f"Django {django.get_version()} MD5PasswordHasher")
# Django 5.1 removed its SHA1 hashers; their format was sha1$salt$sha1(salt + password).
p, salt = pw(), secrets.token_hex(6)
line("sha1", p, f"sha1${salt}${hashlib.sha1((salt + p).encode()).hexdigest()}", weak=True,
     source="Django's former SHA1PasswordHasher format, by hashlib")
p = pw()
line("unsalted_md5", p, f"unsalted_md5$${hashlib.md5(p.encode()).hexdigest()}", weak=True,
     source="Django's former UnsaltedMD5PasswordHasher format, by hashlib")

# PHC strings and bare bcrypt.
p = pw()
line("argon2id", p, argon2.PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash(p),
     source="argon2-cffi PasswordHasher")
p = pw()
line("argon2i", p, argon2.PasswordHasher(type=argon2.Type.I, time_cost=3, memory_cost=32768, parallelism=2).hash(p),
     source="argon2-cffi PasswordHasher(type=I)")
p = pw()
line("scrypt", p, passlib_scrypt.using(rounds=14, block_size=8, parallelism=1).hash(p), source="passlib scrypt")
for prefix in ["2a", "2b"]:
    p = pw()
    line(f"bcrypt_{prefix}", p, bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=10, prefix=prefix.encode())).decode(),
         source=f"python bcrypt hashpw(prefix={prefix!r})")
# PHP's crypt writes $2y$ for what python's bcrypt writes as $2b$ (the same algorithm).
p = pw()
h = bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=10)).decode()
line("bcrypt_2y", p, "$2y$" + h[4:], source="python bcrypt hashpw, $2b$ relabelled $2y$ as PHP writes it")

# Hashes that import and must also verify: argon2 with other output lengths than 32
# bytes, and bcrypt whose salt is written with its unused bits set.
p = pw()
line("argon2id_hash_len_64", p, argon2.PasswordHasher(hash_len=64).hash(p),
     source="argon2-cffi PasswordHasher(hash_len=64)")
p = pw()
line("argon2id_hash_len_16", p, argon2.PasswordHasher(hash_len=16).hash(p),
     source="argon2-cffi PasswordHasher(hash_len=16)")
# bcrypt's salt is 22 characters for 16 bytes: the last character's low 4 bits are unused.
# python's bcrypt writes them as zero; some encoders do not. Setting them changes the
# spelling, not the salt, so the hash is still the password's: libxcrypt's crypt(3), which
# decodes as OpenBSD's bcrypt does, reads it as the same salt and gives back the canonical
# hash (checked below when the crypt module is there); pyca/bcrypt refuses it.
BCRYPT64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
p = pw()
h = bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=10)).decode()
loose = h[:28] + BCRYPT64[BCRYPT64.index(h[28]) | 0x0F] + h[29:]
assert loose != h
try:
    import crypt  # noqa: E402  (deprecated, gone in 3.13; only a cross-check)
    assert crypt.crypt(p, loose) == h, "libxcrypt reads another salt"
    checked = "; libxcrypt crypt(3) reads the same salt"
except ImportError:
    checked = ""
line("bcrypt_loose_salt", p, loose,
     source=f"python bcrypt hashpw, the salt's last character with its unused low bits set{checked}")
