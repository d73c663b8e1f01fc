"""The deterministic Braze world of the sandbox: users, segments, campaigns, Canvases, catalogs.

Everything follows from one integer seed (and the world's `today`):

- Users are generated on demand from a 24-byte "gene" per user, drawn once from
  `random.Random(seed)`. A world of a million users costs a few seconds (one pass to build
  the email/phone indexes, segment sizes and the seeded unsubscribe and bounce logs) and
  ~24 MB of genes; only users that change afterwards are stored as dicts.
- Daily analytics (segment sizes, campaign and Canvas series) are pure functions of
  (seed, object id, day): the same day always gives the same numbers, whenever it is asked.

The seeded values are deliberately awkward where real workspaces are: users without an
external_id or an email, invalid and shared emails, national and unparseable phones, unicode
and emoji names, numbers stored as strings in number attributes.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import re
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

DAY_S = 86_400.0
SERIES_DAYS = 400
GENE_BYTES = 24
MAX_SLOTS = 0xFFFFFF  # the braze_id keeps the slot in its last 6 hex digits

# (display name, ASCII slug used in email local parts)
FIRST_NAMES: tuple[tuple[str, str], ...] = (
    ("Ana", "ana"), ("José", "jose"), ("Zoë", "zoe"), ("Łukasz", "lukasz"), ("太郎", "taro"),
    ("Chloé", "chloe"), ("Søren", "soren"), ("Renée", "renee"), ("Bob", "bob"), ("Mia", "mia"),
    ("Liam", "liam"), ("Olivia", "olivia"), ("Noah", "noah"), ("Emma", "emma"), ("Lucas", "lucas"),
    ("Léa", "lea"), ("Mohamed", "mohamed"), ("Fatima", "fatima"), ("Hiroshi", "hiroshi"),
    ("Priya", "priya"), ("Sven", "sven"), ("Ingrid", "ingrid"), ("Mateo", "mateo"), ("Sofía", "sofia"),
    ("Ana 🌸", "ana"), ("Jürgen", "jurgen"), ("Anaïs", "anais"), ("Kwame", "kwame"), ("Aoife", "aoife"),
    ("Dmitri", "dmitri"), ("Elif", "elif"), ("Thảo", "thao"),
)  # fmt: skip
LAST_NAMES: tuple[tuple[str, str], ...] = (
    ("García", "garcia"), ("Müller", "muller"), ("Nowak", "nowak"), ("山田", "yamada"),
    ("O'Brien", "obrien"), ("Smith", "smith"), ("Dupont", "dupont"), ("Rossi", "rossi"),
    ("Kowalski", "kowalski"), ("Jensen", "jensen"), ("Silva", "silva"), ("Björk", "bjork"),
    ("Martin", "martin"), ("Nguyen", "nguyen"), ("Haddad", "haddad"), ("Patel", "patel"),
    ("Ivanova", "ivanova"), ("Lefèvre", "lefevre"), ("Dubois", "dubois"), ("Fischer", "fischer"),
    ("Costa", "costa"), ("Tanaka", "tanaka"), ("Wójcik", "wojcik"), ("Smith 🚀", "smith"),
    ("Moreau", "moreau"), ("Schmidt", "schmidt"), ("Öztürk", "ozturk"), ("Kim", "kim"),
    ("Andersson", "andersson"), ("Okafor", "okafor"), ("Romero", "romero"), ("Brown", "brown"),
)  # fmt: skip
DOMAINS = ("example.com", "example.fr", "example.de", "example.org", "mail.example.com", "example.net")
UNICODE_LOCALS = ("zoë", "josé", "łukasz", "renée", "müller", "søren", "anaïs", "chloé")
PLUS_TAGS = ("promo", "news", "shop")


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    language: str
    time_zone: str
    cities: tuple[str, ...]
    zips: tuple[str, ...]
    calling_code: str
    mobile_prefix: str
    national_digits: int  # length of the national number after the mobile prefix


COUNTRIES: tuple[Country, ...] = (
    Country("US", "en", "America/New_York", ("New York", "San Francisco", "Chicago"), ("10001", "94105", "60601"), "+1", "415", 7),
    Country("FR", "fr", "Europe/Paris", ("Paris", "Lyon", "Marseille"), ("75011", "69002", "13001"), "+33", "6", 8),
    Country("DE", "de", "Europe/Berlin", ("Berlin", "München", "Köln"), ("10115", "80331", "50667"), "+49", "151", 8),
    Country("ES", "es", "Europe/Madrid", ("Madrid", "Barcelona", "Sevilla"), ("28001", "08001", "41001"), "+34", "6", 8),
    Country("GB", "en", "Europe/London", ("London", "Manchester", "Leeds"), ("SW1A 1AA", "M1 1AE", "LS1 1UR"), "+44", "7", 9),
    Country("PL", "pl", "Europe/Warsaw", ("Warszawa", "Kraków", "Łódź"), ("00-001", "30-001", "90-001"), "+48", "5", 8),
    Country("JP", "ja", "Asia/Tokyo", ("東京", "大阪", "Kyoto"), ("100-0001", "530-0001", "600-8001"), "+81", "90", 8),
    Country("BR", "pt", "America/Sao_Paulo", ("São Paulo", "Rio de Janeiro", "Curitiba"), ("01000-000", "20000-000", "80000-000"), "+55", "119", 8),
)  # fmt: skip
APP_VERSIONS = ("3.2.1", "3.2.0", "3.1.4", "2.9.0", "3.3.0-beta.1")
CATEGORIES = ("shoes", "outerwear", "accessories", "beauty", "home", "sports", "kids")
SUBSCRIBE_STATES = ("opted_in", "subscribed", "unsubscribed")
GENDERS = ("M", "F", "O", "N", "P")
UNPARSEABLE_PHONES = ("12", "n/a", "+00 000", "555", "call me")
GARBAGE_POINTS = ("lots", "n/a", "many")
EVENT_NAMES = (
    "app_open",
    "added_to_cart",
    "viewed_product",
    "order_placed",
    "review_written",
    "wishlist_add",
)


# ------------------------------------------------------------------ time formats
def midnight_epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def utc_day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def iso_z(ts: float) -> str:
    """ISO-8601 with milliseconds and Z, as Braze's email lists print timestamps."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def iso_offset(ts: float) -> str:
    """ISO-8601 with a +00:00 offset, as Braze's campaign and Canvas endpoints print them."""
    return datetime.fromtimestamp(int(ts), UTC).isoformat()


_EPOCH_DAY = date(1970, 1, 1)
_DAY_TEXT: dict[int, str] = {}  # days since the epoch -> 'YYYY-MM-DD'; a few thousand at most


def utc_text(ts: float, sep: str = " ") -> str:
    """`datetime.fromtimestamp(ts, UTC).strftime(f"%Y-%m-%d{sep}%H:%M:%S")` for years 1000-9999.

    Exports format a date or two per user, and a datetime and strftime cost several times
    this. datetime rounds the timestamp to the microsecond (half to even) before it shows
    whole seconds, so 12.9999996 reads as 13 seconds: the same rounding is done here.
    """
    fraction, whole = math.modf(ts)
    seconds = int(whole)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        seconds += 1
    elif micros < 0:
        seconds -= 1
    days, rest = divmod(seconds, 86_400)
    day = _DAY_TEXT.get(days)
    if day is None:
        day = _DAY_TEXT[days] = (_EPOCH_DAY + timedelta(days=days)).isoformat()
    return f"{day}{sep}{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"


def export_time(ts: float) -> str:
    """The user-export `created_at` style: '2020-07-10 15:00:00.000 UTC'."""
    return f"{utc_text(ts)}.{int(ts * 1000) % 1000:03d} UTC"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# ------------------------------------------------------------------ identities
_PHONE_NOISE = re.compile(r"[\s().\-/]")


def phone_key(phone: str) -> str:
    """The form phones are matched on: E.164 when it can be read, else the trimmed text.

    Like Braze, a bare 10-digit number is read as a US number.
    """
    text = phone.strip()
    digits = _PHONE_NOISE.sub("", text)
    if digits.startswith("+") and digits[1:].isdigit() and 8 <= len(digits) - 1 <= 15:
        return digits
    if digits.isdigit():
        if len(digits) == 10:
            return "+1" + digits
        if len(digits) == 11 and digits.startswith("1"):
            return "+" + digits
    return text


def email_key(email: str) -> str:
    return email.strip().lower()


_WHITESPACE = re.compile(r"\s")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+")


def email_problem(email: str) -> str | None:
    """Why Braze would refuse this address (syntax only, like Braze), or None when it is fine."""
    if not email.strip():
        return "is empty"
    if _WHITESPACE.search(email):
        return "contains whitespace"
    local, at, domain = email.partition("@")
    if not at or "@" in domain:
        return "must contain exactly one '@'"
    if not local or len(local) > 64 or local[0] == "." or local[-1] == "." or ".." in local:
        return "has an invalid local part"
    if not domain.isascii():
        return "has a non-ASCII domain (use punycode)"
    if _DOMAIN.fullmatch(domain) is None:
        return "has an invalid domain"
    if len(email) > 254:
        return "is too long"
    return None


# ------------------------------------------------------------------ users
class _Head(NamedTuple):
    """The cheap part of a seeded user: what indexes, segment rules and logs need."""

    known: bool  # has an external_id
    ext_hex: int
    first: int
    last: int
    country: int
    email_kind: int  # 0..999, see _email_of
    domain: int
    share_back: int  # how far back the user whose email/phone this one shares is
    phone_kind: int  # 0..99, see _phone_of
    email_subscribe: str
    random_bucket: int
    vip: bool
    hard_bounce: bool
    created_ts: float
    updated_ts: float


class UserSeeds:
    """Generates seeded users from their genes. Stateless after construction."""

    def __init__(self, seed: int, n_users: int, today: date) -> None:
        if not 0 <= n_users <= MAX_SLOTS:
            raise ValueError(f"n_users must be between 0 and {MAX_SLOTS}")
        rng = random.Random(f"braze-users:{seed}")
        self.seed = seed
        self.n = n_users
        self.genes = rng.randbytes(GENE_BYTES * n_users)
        self.id_tag = rng.getrandbits(40)  # the middle of every seeded braze_id
        self.t0 = midnight_epoch(today)
        # Users were created over four years, oldest first, the last one yesterday.
        self.created_from = self.t0 - 4 * 365 * DAY_S
        self.created_span = 4 * 365 * DAY_S - DAY_S
        self.today = today  # with seed and n, all a process needs to rebuild these seeds
        self._full_profile = _profile_drawer(self, None, None)

    def gene(self, slot: int) -> int:
        start = slot * GENE_BYTES
        return int.from_bytes(self.genes[start : start + GENE_BYTES], "little")

    def head(self, slot: int, gene: int | None = None) -> _Head:
        g = self.gene(slot) if gene is None else gene
        g, known = divmod(g, 100)
        g, ext_hex = divmod(g, 0x10000)
        g, first = divmod(g, len(FIRST_NAMES))
        g, last = divmod(g, len(LAST_NAMES))
        g, country = divmod(g, len(COUNTRIES))
        g, email_kind = divmod(g, 1000)
        g, domain = divmod(g, len(DOMAINS))
        g, share_back = divmod(g, 20)
        g, phone_kind = divmod(g, 100)
        g, esub = divmod(g, 100)
        g, bucket = divmod(g, 10_000)
        g, vip = divmod(g, 100)
        g, bounce = divmod(g, 1000)
        g, t1 = divmod(g, 4096)
        t2 = g % 4096
        created = self.created_from + (slot + t1 / 4096) * self.created_span / max(self.n, 1)
        updated = created + (t2 / 4096) * (self.t0 - created)
        # Positional: heads are built once per user of every export, and keywords cost twice as much.
        return _Head(
            known >= 3,  # ~3 % are email-only users
            ext_hex,
            first,
            last,
            country,
            email_kind,
            domain,
            share_back + 1,
            phone_kind,
            "opted_in" if esub < 30 else "subscribed" if esub < 85 else "unsubscribed",
            bucket,
            vip < 5,
            bounce < 5,
            created,
            updated,
        )

    # -- identities
    def external_id(self, slot: int, head: _Head) -> str | None:
        return f"u-{slot:06d}-{head.ext_hex:04x}" if head.known else None

    def braze_id(self, slot: int, head: _Head) -> str:
        # ObjectId-like: 8 hex of seconds (masked so ids keep 24 digits whatever the clock), tag, slot.
        return f"{int(head.created_ts) & 0xFFFFFFFF:08x}{self.id_tag:010x}{slot:06x}"

    def _base_email(self, slot: int, head: _Head) -> str:
        return f"{FIRST_NAMES[head.first][1]}.{LAST_NAMES[head.last][1]}{slot}@{DOMAINS[head.domain]}"

    def email(self, slot: int, head: _Head) -> str | None:
        kind = head.email_kind
        first = FIRST_NAMES[head.first][1]
        last = LAST_NAMES[head.last][1]
        domain = DOMAINS[head.domain]
        if kind < 20:  # ~2 % without email
            return None
        if kind < 30:  # ~1 % invalid, the way people really mistype them
            return (
                f"{first}@@{domain.split('.')[0]}",
                f"{first}.{last}{slot}",
                f"{first} {last}{slot}@{domain}",
                f"{first}{slot}@",
                f"@{domain}",
            )[kind % 5]
        if kind < 70:
            return f"{first}.{last}{slot}+{PLUS_TAGS[kind % 3]}@{domain}"
        if kind < 100:
            return f"{UNICODE_LOCALS[kind % len(UNICODE_LOCALS)]}{slot}@{domain}"
        if kind < 130:
            return f"{first}.{last}{slot}@{domain.upper()}"
        if kind < 145 and slot >= head.share_back:  # shares the address of a user created just before
            other = slot - head.share_back
            return self._base_email(other, self.head(other))
        return self._base_email(slot, head)

    def _e164(self, slot: int, head: _Head) -> str:
        c = COUNTRIES[head.country]
        return f"{c.calling_code}{c.mobile_prefix}{slot % 10**c.national_digits:0{c.national_digits}d}"

    def phone(self, slot: int, head: _Head) -> str | None:
        kind = head.phone_kind
        if kind < 40:
            return None
        if kind < 78:
            return self._e164(slot, head)
        if kind < 86:  # national formats; a bare 10-digit number reads as US in Braze
            c = COUNTRIES[head.country]
            national = self._e164(slot, head)[len(c.calling_code) :]
            if c.code == "US":
                return f"({national[:3]}) {national[3:6]}-{national[6:]}" if kind % 2 else national
            return "0" + national
        if kind < 91 and slot >= head.share_back:
            other = slot - head.share_back
            return self._e164(other, self.head(other))
        if kind < 95:
            return UNPARSEABLE_PHONES[kind % len(UNPARSEABLE_PHONES)]
        c = COUNTRIES[head.country]
        national = self._e164(slot, head)[len(c.calling_code) :]
        return f"{c.calling_code} {' '.join(national[i : i + 2] for i in range(0, len(national), 2))}"

    def profile(self, slot: int) -> dict[str, Any]:
        """The full Braze user export object of a seeded user, as it was when seeded."""
        gene = self.gene(slot)
        return self._full_profile.draw(slot, self.head(slot, gene), random.Random(gene))

    def profile_drawer(
        self, fields: Collection[str] | None = None, custom: Collection[str] | None = None
    ) -> ProfileDrawer:
        """Seeded profiles limited to some fields, each value exactly as in the full profile.

        Only `fields` (all when None) are kept and, when `custom` is given, only those custom
        attributes, in that order (no `custom_attributes` at all when none is left). Every
        value is still drawn, in the full profile's order, so a field reads the same whichever
        others are asked for; what is not asked for is just never formatted. Nothing is drawn
        when no asked field needs the user's Random (`needs_rng`).
        """
        return _profile_drawer(self, fields, custom)


# Every key of a seeded profile, in the order profile() gives them.
PROFILE_FIELDS = (
    "external_id", "braze_id", "created_at", "random_bucket", "first_name", "last_name", "email",
    "phone", "dob", "country", "language", "home_city", "gender", "time_zone", "email_subscribe",
    "push_subscribe", "total_revenue", "custom_attributes",
)  # fmt: skip
CUSTOM_ATTRIBUTES = (
    "loyalty_points", "last_app_version", "preferred_language", "address", "favorite_categories",
    "signup_date", "vip",
)  # fmt: skip
_DRAWN_FIELDS = frozenset(
    {"dob", "country", "language", "home_city", "gender", "time_zone", "push_subscribe", "total_revenue",
     "custom_attributes"}
)  # fmt: skip
_PUSH_WEIGHTS = tuple(itertools.accumulate((25, 55, 20)))  # as Random.choices accumulates them
_REVENUE_RATE = 1 / 120  # Random.expovariate divides by the rate: 1 / 120, not times 120
_FALLBACK_LANGUAGES = ("en", "fr", "de")


class ProfileDrawer(NamedTuple):
    """`draw(slot, head, rng)` with `rng` seeded with the user's gene (any Random when not `needs_rng`)."""

    draw: Callable[[int, _Head, random.Random], dict[str, Any]]
    needs_rng: bool


def _below(getrandbits: Callable[[int], int], n: int) -> int:
    # Random._randbelow_with_getrandbits, which randrange, choice and sample use (CPython
    # 3.11-3.13): the same bits give the same values, without their layers of checks.
    k = n.bit_length()
    r = getrandbits(k)
    while r >= n:
        r = getrandbits(k)
    return r


def _profile_drawer(
    seeds: UserSeeds, fields: Collection[str] | None, custom: Collection[str] | None
) -> ProfileDrawer:
    # Plain booleans in a closure: this runs once per exported user, a million times an export.
    want = frozenset(PROFILE_FIELDS if fields is None else fields)
    want_ext, want_braze_id = "external_id" in want, "braze_id" in want
    want_created, want_bucket = "created_at" in want, "random_bucket" in want
    want_first, want_last = "first_name" in want, "last_name" in want
    want_email, want_phone = "email" in want, "phone" in want
    want_dob, want_country, want_language = "dob" in want, "country" in want, "language" in want
    want_city, want_gender, want_zone = "home_city" in want, "gender" in want, "time_zone" in want
    want_esub, want_push = "email_subscribe" in want, "push_subscribe" in want
    want_revenue, want_custom = "total_revenue" in want, "custom_attributes" in want
    needs_rng = not want.isdisjoint(_DRAWN_FIELDS)
    attrs_order = None if custom is None else tuple(dict.fromkeys(custom))
    attrs = frozenset(CUSTOM_ATTRIBUTES if custom is None else custom)
    want_points, want_version = "loyalty_points" in attrs, "last_app_version" in attrs
    want_pref, want_address = "preferred_language" in attrs, "address" in attrs
    want_categories, want_signup = "favorite_categories" in attrs, "signup_date" in attrs
    want_vip = "vip" in attrs
    external_id_of, braze_id_of = seeds.external_id, seeds.braze_id
    email_of, phone_of = seeds.email, seeds.phone
    bisect_right = bisect.bisect_right

    def draw(slot: int, head: _Head, rng: random.Random) -> dict[str, Any]:
        user: dict[str, Any] = {}
        if want_ext and head.known:
            user["external_id"] = external_id_of(slot, head)
        if want_braze_id:
            user["braze_id"] = braze_id_of(slot, head)
        if want_created:
            user["created_at"] = export_time(head.created_ts)
        if want_bucket:
            user["random_bucket"] = head.random_bucket
        if want_first:
            user["first_name"] = FIRST_NAMES[head.first][0]
        if want_last:
            user["last_name"] = LAST_NAMES[head.last][0]
        if want_email:
            email = email_of(slot, head)
            if email is not None:
                user["email"] = email
        if want_phone:
            phone = phone_of(slot, head)
            if phone is not None:
                user["phone"] = phone
        if not needs_rng:
            if want_esub:
                user["email_subscribe"] = head.email_subscribe
            return user
        # The draws below are those of the original profile, one for one and in this order.
        uniform = rng.random
        bits = rng.getrandbits
        country = COUNTRIES[head.country]
        if uniform() < 0.85:
            year = 1950 + _below(bits, 57)
            month = 1 + _below(bits, 12)
            day = 1 + _below(bits, 28)
            if want_dob:
                user["dob"] = f"{year}-{month:02d}-{day:02d}"
        if uniform() < 0.95 and want_country:
            user["country"] = country.code
        if uniform() < 0.9 and want_language:
            user["language"] = country.language
        city = _below(bits, len(country.cities))
        if uniform() < 0.8 and want_city:
            user["home_city"] = country.cities[city]
        if uniform() < 0.85:
            gender = GENDERS[_below(bits, len(GENDERS))]
            if want_gender:
                user["gender"] = gender
        if uniform() < 0.9 and want_zone:
            user["time_zone"] = country.time_zone
        if want_esub:
            user["email_subscribe"] = head.email_subscribe
        if uniform() < 0.9:
            push = SUBSCRIBE_STATES[bisect_right(_PUSH_WEIGHTS, uniform() * 100.0, 0, 2)]
            if want_push:
                user["push_subscribe"] = push
        revenue = round(-math.log(1.0 - uniform()) / _REVENUE_RATE, 2) if uniform() < 0.4 else 0.0
        if want_revenue:
            user["total_revenue"] = revenue
        if not want_custom:
            return user

        custom_attributes: dict[str, Any] = {}
        roll = uniform()
        points = _below(bits, 5000)
        if want_points:
            if roll < 0.005:  # the wrong type for a number
                custom_attributes["loyalty_points"] = GARBAGE_POINTS[points % len(GARBAGE_POINTS)]
            elif roll < 0.025:
                custom_attributes["loyalty_points"] = str(points)  # a number stored as a string
            elif roll < 0.95:
                custom_attributes["loyalty_points"] = points
        if uniform() < 0.9:
            version = APP_VERSIONS[_below(bits, len(APP_VERSIONS))]
            if want_version:
                custom_attributes["last_app_version"] = version
        if uniform() < 0.7:
            if uniform() < 0.8:
                preferred = country.language
            else:
                preferred = _FALLBACK_LANGUAGES[_below(bits, len(_FALLBACK_LANGUAGES))]
            if want_pref:
                custom_attributes["preferred_language"] = preferred
        if uniform() < 0.6 and want_address:
            custom_attributes["address"] = {"city": country.cities[city], "zip": country.zips[city]}
        if uniform() < 0.75:
            # Random.sample(CATEGORIES, randrange(0, 4)): a pool of 7 is below its set-size threshold.
            count = _below(bits, 4)
            pool = list(CATEGORIES)
            picked = []
            for i in range(count):
                j = _below(bits, len(pool) - i)
                picked.append(pool[j])
                pool[j] = pool[len(pool) - i - 1]
            if want_categories:
                custom_attributes["favorite_categories"] = picked
        if uniform() < 0.8 and want_signup:
            custom_attributes["signup_date"] = utc_text(head.created_ts, "T") + "Z"
        if want_vip:
            custom_attributes["vip"] = head.vip
        if attrs_order is not None:
            custom_attributes = {k: custom_attributes[k] for k in attrs_order if k in custom_attributes}
            if not custom_attributes:
                return user
        user["custom_attributes"] = custom_attributes
        return user

    return ProfileDrawer(draw, needs_rng)


def _index_add(index: dict[str, int | list[int]], key: str, slot: int) -> None:
    found = index.get(key)
    if found is None:
        index[key] = slot
    elif isinstance(found, int):
        if found != slot:
            index[key] = [found, slot]
    elif slot not in found:
        found.append(slot)


def _index_remove(index: dict[str, int | list[int]], key: str, slot: int) -> None:
    found = index.get(key)
    if found is None:
        return
    if isinstance(found, int):
        if found == slot:
            del index[key]
        return
    if slot in found:
        found.remove(slot)
    if len(found) == 1:
        index[key] = found[0]


def _index_get(index: dict[str, int | list[int]], key: str) -> list[int]:
    found = index.get(key)
    if found is None:
        return []
    return [found] if isinstance(found, int) else list(found)


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars), much faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


class UserTable(Mapping[str, dict[str, Any]]):
    """All users of the world by slot: seeded ones generated on demand, changed ones stored.

    A slot is a user's insertion position (seeded users first, then created ones); the
    braze_id ends with it, and seeded external_ids carry it, so lookups need no big dicts.
    As a Mapping it is keyed by braze_id and yields read-only copies of the profiles; the
    emulator changes users only through `store`, `create` and `delete`, which keep the
    email, phone, external_id and alias indexes right.
    """

    def __init__(self, seeds: UserSeeds) -> None:
        self.seeds = seeds
        self.next_slot = seeds.n
        self._stored: dict[int, dict[str, Any]] = {}
        self._updated_at: dict[int, float] = {}
        self._deleted: set[int] = set()
        self._by_email: dict[str, int | list[int]] = {}
        self._by_phone: dict[str, int | list[int]] = {}
        self._by_external: dict[str, int] = {}  # external_ids of created users
        self._by_alias: dict[tuple[str, str], int] = {}
        self.events: dict[int, list[dict[str, Any]]] = {}
        self.groups: dict[int, dict[str, str]] = {}
        self._alive = seeds.n

    # -- Mapping (by braze_id)
    def __getitem__(self, braze_id: str) -> dict[str, Any]:
        slot = self.slot_of_braze_id(braze_id)
        if slot is None:
            raise KeyError(braze_id)
        profile: dict[str, Any] = copy_json(self.profile(slot))
        return profile

    def __iter__(self) -> Iterator[str]:
        for slot in self.iter_slots():
            yield self.braze_id(slot)

    def __len__(self) -> int:
        return self._alive

    # -- reading
    def is_stored(self, slot: int) -> bool:
        return slot in self._stored

    def alive(self, slot: int) -> bool:
        return slot in self._stored or (0 <= slot < self.seeds.n and slot not in self._deleted)

    def iter_slots(self, start: int = 0) -> Iterator[int]:
        """Alive slots in insertion order."""
        deleted, stored, n_seeded = self._deleted, self._stored, self.seeds.n
        for slot in range(start, self.next_slot):
            if (slot < n_seeded and slot not in deleted) or slot in stored:
                yield slot

    def profile(self, slot: int) -> dict[str, Any]:
        """The current profile. Read-only: it may be the stored object itself."""
        stored = self._stored.get(slot)
        return stored if stored is not None else self.seeds.profile(slot)

    def braze_id(self, slot: int) -> str:
        stored = self._stored.get(slot)
        if stored is not None:
            return str(stored["braze_id"])
        return self.seeds.braze_id(slot, self.seeds.head(slot))

    def updated_at(self, slot: int) -> float:
        if slot in self._updated_at:
            return self._updated_at[slot]
        return self.seeds.head(slot).updated_ts

    def slot_of_braze_id(self, braze_id: str) -> int | None:
        if len(braze_id) != 24:
            return None
        try:
            slot = int(braze_id[-6:], 16)
        except ValueError:
            return None
        if not self.alive(slot):
            return None
        return slot if self.braze_id(slot) == braze_id else None

    def slot_of_external_id(self, external_id: str) -> int | None:
        slot = self._by_external.get(external_id)
        if slot is not None:
            return slot
        match = re.fullmatch(r"u-(\d{6,8})-([0-9a-f]{4})", external_id)
        if match is None:
            return None
        slot = int(match.group(1))
        if slot >= self.seeds.n or slot in self._deleted:
            return None
        head = self.seeds.head(slot)
        return slot if self.seeds.external_id(slot, head) == external_id else None

    def slot_of_alias(self, alias_label: str, alias_name: str) -> int | None:
        return self._by_alias.get((alias_label, alias_name))

    def slots_with_email(self, email: str) -> list[int]:
        return _index_get(self._by_email, email_key(email))

    def slots_with_phone(self, phone: str) -> list[int]:
        return _index_get(self._by_phone, phone_key(phone))

    def email_keys(self) -> int:
        return len(self._by_email)

    def changed_slots(self, start: int, stop: int) -> list[int]:
        """Slots in [start, stop) that no longer hold their seeded profile: stored or deleted."""
        span = range(start, stop)
        found: set[int] = set()
        # Both look up each slot of the range, whatever the number of changed users.
        if self._stored:
            found.update(self._stored.keys() & span)
        if self._deleted:
            found.update(self._deleted.intersection(span))
        return sorted(found)

    def slots_with_events(self, start: int, stop: int) -> list[int]:
        return sorted(self.events.keys() & range(start, stop)) if self.events else []

    # -- changing
    def _index(self, slot: int, profile: Mapping[str, Any], add: bool) -> None:
        op = _index_add if add else _index_remove
        email = profile.get("email")
        if isinstance(email, str):
            op(self._by_email, email_key(email), slot)
        phone = profile.get("phone")
        if isinstance(phone, str):
            op(self._by_phone, phone_key(phone), slot)
        if slot >= self.seeds.n and isinstance(profile.get("external_id"), str):
            if add:
                self._by_external[profile["external_id"]] = slot
            else:
                self._by_external.pop(profile["external_id"], None)
        for alias in profile.get("user_aliases") or ():
            key = (str(alias.get("alias_label")), str(alias.get("alias_name")))
            if add:
                self._by_alias[key] = slot
            elif self._by_alias.get(key) == slot:
                del self._by_alias[key]

    def index_seeded(self, slot: int, email: str | None, phone: str | None) -> None:
        if email is not None:
            _index_add(self._by_email, email_key(email), slot)
        if phone is not None:
            _index_add(self._by_phone, phone_key(phone), slot)

    def store(self, slot: int, profile: dict[str, Any], now: float) -> bool:
        """Replace a user's profile with a new dict (never the object `profile()` returned).

        Returns whether anything changed; only then is the profile kept and updated_at moved.
        """
        old = self.profile(slot)
        if old is profile:
            # A programming error, not bad input: ValueError would surface as a user-facing error item.
            raise RuntimeError("store() needs a changed copy, not the profile object itself")
        if old == profile:
            return False
        self._index(slot, old, add=False)
        self._stored[slot] = profile
        self._index(slot, profile, add=True)
        self.touch(slot, now)
        return True

    def touch(self, slot: int, now: float) -> None:
        # Strictly increasing per user, so a change is never older than the seeded history.
        self._updated_at[slot] = max(now, self.updated_at(slot) + 1e-6)

    def create(self, profile: dict[str, Any], now: float) -> int:
        slot = self.next_slot
        if slot > MAX_SLOTS:
            raise OverflowError("the sandbox holds at most 16,777,215 users")
        self.next_slot += 1
        profile["braze_id"] = f"{int(now) & 0xFFFFFFFF:08x}{self.seeds.id_tag ^ 0xFFFFFFFFFF:010x}{slot:06x}"
        profile.setdefault("created_at", export_time(now))
        profile.setdefault(
            "random_bucket", random.Random(f"{self.seeds.seed}:bucket:{slot}").randrange(10_000)
        )
        self._stored[slot] = profile
        self._index(slot, profile, add=True)
        self._updated_at[slot] = now
        self._alive += 1
        return slot

    def delete(self, slot: int) -> None:
        if not self.alive(slot):
            return
        self._index(slot, self.profile(slot), add=False)
        self._stored.pop(slot, None)
        self._updated_at.pop(slot, None)
        self.events.pop(slot, None)
        self.groups.pop(slot, None)
        self._deleted.add(slot)
        self._alive -= 1

    # -- snapshots: only what differs from the seed
    def dump(self) -> dict[str, Any]:
        return {
            "next_slot": self.next_slot,
            "stored": {str(slot): p for slot, p in self._stored.items()},
            "updated_at": {str(slot): t for slot, t in self._updated_at.items()},
            "deleted": sorted(self._deleted),
            "events": {str(slot): e for slot, e in self.events.items()},
            "groups": {str(slot): g for slot, g in self.groups.items()},
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Apply a dump() made from a table with the same seeds (a freshly seeded one)."""
        self.next_slot = max(self.next_slot, int(state.get("next_slot", self.seeds.n)))
        for slot in map(int, state.get("deleted", ())):
            if slot < self.seeds.n:
                self.delete(slot)
            else:
                self._deleted.add(slot)
        for key, profile in state.get("stored", {}).items():
            slot = int(key)
            if slot >= self.seeds.n:
                self._alive += 1
            else:
                self._index(slot, self.profile(slot), add=False)
            self._stored[slot] = copy_json(profile)
            self._index(slot, profile, add=True)
        self._updated_at.update({int(k): float(v) for k, v in state.get("updated_at", {}).items()})
        self.events = {int(k): copy_json(v) for k, v in state.get("events", {}).items()}
        self.groups = {int(k): dict(v) for k, v in state.get("groups", {}).items()}


# ------------------------------------------------------------------ segments
SEGMENT_RULES = ("all", "engaged", "dormant", "vip", "listed")


@dataclass
class SegmentDef:
    """A Braze segment: its metadata, its membership rule and the overrides set by tests."""

    id: str
    name: str
    rule: str  # one of SEGMENT_RULES
    analytics_tracking_enabled: bool
    tags: list[str]
    description: str
    created_at: float
    updated_at: float
    members: set[str] = field(default_factory=set)  # the rule "listed": external_ids
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    seeded_size: int = 0  # today's size when seeded; the size series is drawn around it

    def matches(self, external_id: str | None, email_subscribe: Any, random_bucket: Any, vip: Any) -> bool:
        if external_id is not None:
            if external_id in self.removed:
                return False
            if external_id in self.added:
                return True
        rule = self.rule
        if rule == "all":
            return True
        if rule == "engaged":
            return (
                email_subscribe != "unsubscribed" and isinstance(random_bucket, int) and random_bucket < 5000
            )
        if rule == "dormant":
            return isinstance(random_bucket, int) and random_bucket >= 8000
        if rule == "vip":
            return vip is True
        return external_id is not None and external_id in self.members

    def contains(self, profile: Mapping[str, Any]) -> bool:
        custom = profile.get("custom_attributes") or {}
        return self.matches(
            profile.get("external_id"),
            profile.get("email_subscribe"),
            profile.get("random_bucket"),
            custom.get("vip") if isinstance(custom, dict) else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "rule": self.rule,
            "analytics_tracking_enabled": self.analytics_tracking_enabled,
            "tags": list(self.tags),
            "description": self.description,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "members": sorted(self.members),
            "added": sorted(self.added),
            "removed": sorted(self.removed),
            "seeded_size": self.seeded_size,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SegmentDef:
        return cls(
            id=data["id"],
            name=data["name"],
            rule=data["rule"],
            analytics_tracking_enabled=bool(data["analytics_tracking_enabled"]),
            tags=list(data["tags"]),
            description=data["description"],
            created_at=float(data["created_at"]),
            updated_at=float(data["updated_at"]),
            members=set(data.get("members", ())),
            added=set(data.get("added", ())),
            removed=set(data.get("removed", ())),
            seeded_size=int(data.get("seeded_size", 0)),
        )


_SEGMENT_SPECS = (
    ("All Users", "all", True, ["default"], "Everyone in the workspace"),
    ("engaged_users", "engaged", True, ["lifecycle"], "Email subscribe state is not unsubscribed AND random bucket < 5000"),
    ("dormant_users", "dormant", False, ["lifecycle", "winback"], "Random bucket >= 8000"),
    ("vip", "vip", True, ["loyalty"], "Custom attribute vip is true"),
    ("small_test", "listed", False, ["qa"], "25 hand-picked test users"),
)  # fmt: skip


# ------------------------------------------------------------------ logs
@dataclass
class TimeLog:
    """(time, email) entries kept sorted by time, with an index by email for lookups."""

    times: list[float] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    by_email: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def add(self, ts: float, email: str) -> None:
        at = bisect.bisect_right(self.times, ts)
        self.times.insert(at, ts)
        self.emails.insert(at, email)
        bisect.insort(self.by_email.setdefault(email_key(email), []), (ts, email))

    def extend_sorted(self, entries: list[tuple[float, str]]) -> None:
        entries.sort()
        for ts, email in entries:
            self.times.append(ts)
            self.emails.append(email)
            self.by_email.setdefault(email_key(email), []).append((ts, email))

    def last_time(self, email: str) -> float | None:
        found = self.by_email.get(email_key(email))
        return found[-1][0] if found else None

    def between(self, start: float, end: float) -> tuple[int, int]:
        """The index range of entries with start <= time <= end."""
        return bisect.bisect_left(self.times, start), bisect.bisect_right(self.times, end)

    def __len__(self) -> int:
        return len(self.times)


# ------------------------------------------------------------------ the world
@dataclass
class BrazeWorld:
    """Everything the Braze emulator serves. Mutated only by BrazeApp, under its lock."""

    seed: int
    today: date
    users: UserTable
    segments: dict[str, SegmentDef]
    campaigns: dict[str, dict[str, Any]]
    canvases: dict[str, dict[str, Any]]
    catalogs: dict[str, dict[str, Any]]
    subscription_groups: dict[str, dict[str, Any]]
    unsubscribes: TimeLog
    hard_bounces: TimeLog
    event_names: set[str]
    series_days: int = SERIES_DAYS
    # States set by /email/status for addresses no profile holds yet, applied when one appears.
    email_states: dict[str, str] = field(default_factory=dict)
    # Entries added after seeding (the seeded ones are rebuilt from the seed on load).
    live_unsubscribes: list[tuple[float, str]] = field(default_factory=list)

    @property
    def n_seeded(self) -> int:
        return self.users.seeds.n

    @property
    def first_series_day(self) -> date:
        return self.today - timedelta(days=self.series_days - 1)


def seed_braze_world(n_users: int, seed: int, *, today: date | None = None) -> BrazeWorld:
    """Build the deterministic Braze world: same (n_users, seed, today) -> same world."""
    if today is None:
        today = datetime.now(UTC).date()
    seeds = UserSeeds(seed, n_users, today)
    table = UserTable(seeds)

    def stream(name: str) -> random.Random:
        # One stream per kind of object, so campaigns do not change with the number of users.
        return random.Random(f"braze-{name}:{seed}")

    t0 = seeds.t0
    segments = _seed_segments(stream("segments"), t0)
    small_test = next(s for s in segments.values() if s.rule == "listed")
    small_test.members = _pick_known(seeds, stream("small-test"), 25)

    # One pass over the seeded heads: indexes, segment sizes and the seeded email logs.
    counts = dict.fromkeys(segments, 0)
    unsubscribed: list[tuple[float, str]] = []
    bounced: list[tuple[float, str]] = []
    rules = [(seg.id, seg) for seg in segments.values()]
    for slot in range(n_users):
        head = seeds.head(slot)
        email = seeds.email(slot, head)
        phone = seeds.phone(slot, head)
        table.index_seeded(slot, email, phone)
        ext = seeds.external_id(slot, head)
        for seg_id, seg in rules:
            if seg.matches(ext, head.email_subscribe, head.random_bucket, head.vip):
                counts[seg_id] += 1
        logged = head.email_subscribe == "unsubscribed" or head.hard_bounce
        if logged and email is not None and email_problem(email) is None:
            if head.email_subscribe == "unsubscribed":
                unsubscribed.append((head.updated_ts, email))
            if head.hard_bounce:
                bounced.append(((head.created_ts + head.updated_ts) / 2, email))
    for seg_id, count in counts.items():
        segments[seg_id].seeded_size = count
    unsubscribes = TimeLog()
    unsubscribes.extend_sorted(unsubscribed)
    hard_bounces = TimeLog()
    hard_bounces.extend_sorted(bounced)

    return BrazeWorld(
        seed=seed,
        today=today,
        users=table,
        segments=segments,
        campaigns=_seed_campaigns(stream("campaigns"), t0),
        canvases=_seed_canvases(stream("canvases"), t0),
        catalogs=_seed_catalogs(stream("catalogs"), t0),
        subscription_groups=_seed_subscription_groups(stream("subscription-groups")),
        unsubscribes=unsubscribes,
        hard_bounces=hard_bounces,
        event_names=set(EVENT_NAMES),
    )


def _pick_known(seeds: UserSeeds, rng: random.Random, count: int) -> set[str]:
    """`count` external_ids spread over the seeded users (fewer only when fewer exist)."""
    picked: set[str] = set()
    candidates = rng.sample(range(seeds.n), min(seeds.n, count * 8))
    if len(candidates) < seeds.n and sum(seeds.head(s).known for s in candidates) < count:
        candidates = list(range(seeds.n))  # a tiny world: take whoever is known
    for slot in candidates:
        ext = seeds.external_id(slot, seeds.head(slot))
        if ext is not None:
            picked.add(ext)
            if len(picked) == count:
                break
    return picked


def _seed_segments(rng: random.Random, t0: float) -> dict[str, SegmentDef]:
    segments: dict[str, SegmentDef] = {}
    for index, (name, rule, tracked, tags, description) in enumerate(_SEGMENT_SPECS):
        created = t0 - (900 - index * 90) * DAY_S + rng.randrange(86_400)
        seg = SegmentDef(
            id=_uuid(rng),
            name=name,
            rule=rule,
            analytics_tracking_enabled=tracked,
            tags=list(tags),
            description=description,
            created_at=created,
            updated_at=created + rng.randrange(1, 300) * DAY_S,
        )
        segments[seg.id] = seg
    return segments


def _seed_subscription_groups(rng: random.Random) -> dict[str, dict[str, Any]]:
    groups = {}
    for name, channel in (("Newsletter", "email"), ("Promotions", "email"), ("SMS Alerts", "sms")):
        gid = _uuid(rng)
        groups[gid] = {"id": gid, "name": name, "channel": channel}
    return groups


# ------------------------------------------------------------------ campaigns and Canvases
# (name, channels, cadence, first sent (days ago), last sent (days ago; None = still sending),
#  archived, API campaign, variants, control group, tags)
_CAMPAIGN_SPECS: tuple[tuple[str, tuple[str, ...], str, int | None, int | None, bool, bool, int, bool, tuple[str, ...]], ...] = (
    ("Welcome Email", ("email",), "daily", 520, None, False, False, 2, True, ("onboarding",)),
    ("Weekly Newsletter", ("email",), "weekly", 380, None, False, False, 1, False, ("newsletter",)),
    ("Spring Sale", ("email", "ios_push", "android_push"), "burst", 330, 327, False, False, 2, False, ("promo",)),
    ("Cart Abandonment", ("email", "sms"), "daily", 300, None, False, True, 1, False, ("transactional", "api")),
    ("Order Shipped Webhook", ("webhook",), "daily", 280, None, False, True, 1, False, ("api",)),
    ("Win-back Dormant Users", ("email",), "weekly", 262, 230, False, False, 3, True, ("winback",)),
    ("Black Friday", ("email", "web_push"), "burst", 250, 246, True, False, 2, False, ("promo", "seasonal")),
    ("App Update Push", ("ios_push", "android_push"), "once", 40, 40, False, False, 1, False, ("product",)),
    ("Loyalty Points Reminder", ("email", "content_cards"), "weekly", 150, None, False, False, 1, False, ("loyalty",)),
    ("Old Promo 2023", ("email",), "burst", 398, 393, True, False, 1, False, ("promo",)),
    ("Summer Teaser (draft)", ("email",), "never", None, None, False, False, 1, False, ("seasonal",)),
    ("SMS Flash Deals", ("sms",), "weekly", 120, 15, False, True, 1, False, ("promo", "api")),
)  # fmt: skip

_CONVERSIONS = (
    {"type": "Opens App", "window": 259_200},
    {"type": "Makes Any Purchase", "window": 604_800},
    {"type": "Performs Custom Event", "window": 86_400, "custom_event_name": "order_placed"},
)


def _message_body(channel: str, name: str, variant: str, rng: random.Random) -> dict[str, Any]:
    base: dict[str, Any] = {"channel": channel, "name": variant}
    if channel == "email":
        base.update(
            subject=f"{name}: {variant}",
            body=f"<html><body><h1>{name}</h1><p>Hello " + "{{${first_name}}}!</p></body></html>",
            reply_to="support@shop.example.com",
            title=f"{name} {variant}",
            preheader="Don't miss out",
            amp_body=None,
            custom_plain_text=None,
            should_inline_css=True,
            should_whitespace_header=False,
            email_headers={},
            extras={},
        )
        base["from"] = "Tajo Shop <news@shop.example.com>"
    elif channel.endswith("_push"):
        base.update(alert=f"{name} — tap to see more", title=name, extras={})
    elif channel == "sms":
        base.update(body=f"{name}: reply STOP to opt out", subscription_group_id=None)
    elif channel == "webhook":
        base.update(url="https://hooks.example.com/orders", body='{"id": "{{${user_id}}}"}', type="POST")
    elif channel == "content_cards":
        base.update(
            title=name, description="Your points are waiting", type="CLASSIC", pinned=rng.random() < 0.3
        )
    return base


def _seed_campaigns(rng: random.Random, t0: float) -> dict[str, dict[str, Any]]:
    campaigns: dict[str, dict[str, Any]] = {}
    for name, channels, cadence, first, last, archived, is_api, variants, control, tags in _CAMPAIGN_SPECS:
        cid = _uuid(rng)
        created = t0 - ((first or 60) + rng.randrange(3, 30)) * DAY_S - rng.randrange(86_400)
        # Braze prints these times to the second; keeping them whole makes `[gt]` filters exact.
        first_sent = None if first is None else t0 - first * DAY_S + rng.randrange(8, 12) * 3600.0
        last_sent = None if last is None else t0 - last * DAY_S + rng.randrange(13, 20) * 3600.0
        edited = float(int(created + rng.random() * (t0 - DAY_S - created)))
        variant_ids: list[dict[str, Any]] = []
        messages: dict[str, dict[str, Any]] = {}
        for v in range(variants):
            vname = f"Variant {v + 1}"
            per_channel = {}
            for channel in channels:
                mid = _uuid(rng)
                per_channel[channel] = mid
                messages[mid] = _message_body(channel, name, vname, rng)
            variant_ids.append({"name": vname, "weight": rng.randrange(1, 5), "messages": per_channel})
        control_id = None
        if control:
            control_id = _uuid(rng)
            messages[control_id] = {"channel": channels[0], "type": "control", "name": "Control"}
        campaigns[cid] = {
            "id": cid,
            "name": name,
            "description": f"{name} ({cadence})",
            "created_at": created,
            "updated_at": edited,
            "last_edited": edited,
            "archived": archived,
            "draft": cadence == "never",
            "enabled": not archived and cadence != "never" and last is None,
            "has_post_launch_draft": False,
            "is_api_campaign": is_api,
            "schedule_type": "api_triggered"
            if is_api
            else ("action_based" if cadence == "daily" else "time_based"),
            "channels": list(channels),
            "cadence": cadence,
            "first_sent": first_sent,
            "last_sent": last_sent,
            "ongoing": first is not None and last is None,
            "tags": list(tags),
            "teams": ["Marketing"],
            "messages": messages,
            "variants": variant_ids,
            "control_id": control_id,
            "conversion_behaviors": [dict(c) for c in _CONVERSIONS[: 1 + len(channels) % 3]],
            "audience": rng.randrange(800, 20_000),
            "weekday": rng.randrange(7),
        }
    return campaigns


# (name, variants, steps, first entry (days ago), last entry (days ago; None = running), archived, a deleted step)
_CANVAS_SPECS: tuple[tuple[str, int, int, int, int | None, bool, bool], ...] = (
    ("Onboarding Journey", 2, 5, 460, None, False, False),
    ("Re-engagement Flow", 1, 4, 200, None, False, False),
    ("Post-Purchase Follow-up", 2, 6, 330, None, False, True),
    ("Birthday Rewards", 1, 3, 380, 210, False, False),
    ("Holiday Countdown", 3, 4, 320, 300, True, False),
)
_STEP_CHANNELS = (("email",), ("ios_push", "android_push"), (), ("email",), ("sms",), ("webhook",))


def _seed_canvases(rng: random.Random, t0: float) -> dict[str, dict[str, Any]]:
    canvases: dict[str, dict[str, Any]] = {}
    for name, n_variants, n_steps, first, last, archived, deleted_step in _CANVAS_SPECS:
        cid = _uuid(rng)
        created = t0 - (first + rng.randrange(3, 20)) * DAY_S
        edited = float(int(created + rng.random() * (t0 - DAY_S - created)))
        steps: list[dict[str, Any]] = []
        step_ids = [_uuid(rng) for _ in range(n_steps + (1 if deleted_step else 0))]
        for index in range(n_steps + (1 if deleted_step else 0)):
            channels = _STEP_CHANNELS[index % len(_STEP_CHANNELS)]
            messages = {_uuid(rng): _message_body(ch, name, f"Step {index + 1}", rng) for ch in channels}
            nxt = [step_ids[index + 1]] if index + 1 < n_steps else []
            steps.append(
                {
                    "name": f"Step {index + 1}" + ("" if channels else " (delay)"),
                    "type": "message" if channels else "delay",
                    "id": step_ids[index],
                    "next_step_ids": nxt,
                    "next_paths": [{"name": "Everyone else", "next_step_id": s} for s in nxt],
                    "channels": list(channels),
                    "messages": messages,
                    "deleted": deleted_step and index == n_steps,
                }
            )
        variants = [
            {
                "name": f"Variant {chr(65 + v)}",
                "id": _uuid(rng),
                "first_step_ids": [step_ids[0]],
                "first_step_id": step_ids[0],
            }
            for v in range(n_variants)
        ]
        channels_used = sorted({ch for s in steps if not s["deleted"] for ch in s["channels"]})
        canvases[cid] = {
            "id": cid,
            "name": name,
            "description": f"{name} Canvas",
            "created_at": created,
            "updated_at": edited,
            "last_edited": edited,
            "archived": archived,
            "draft": False,
            "enabled": not archived and last is None,
            "has_post_launch_draft": False,
            "schedule_type": "action_based",
            "first_entry": t0 - first * DAY_S + 9 * 3600.0,
            "last_entry": None if last is None else t0 - last * DAY_S + 18 * 3600.0,
            "ongoing": last is None,
            "channels": channels_used,
            "variants": variants,
            "steps": steps,
            "tags": ["journeys"],
            "teams": ["Lifecycle"],
            "audience": rng.randrange(200, 5000),
        }
    return canvases


def _seed_catalogs(rng: random.Random, t0: float) -> dict[str, dict[str, Any]]:
    adjectives = ("Classic", "Urban", "Cosy", "Trail", "Summer", "Nordic", "Vintage", "Eco")
    nouns = ("Sneaker", "Parka", "Scarf", "Backpack", "Candle", "Serum", "Hoodie", "Mug", "Cap", "Lamp")
    products: dict[str, dict[str, Any]] = {}
    for i in range(1, 121):
        pid = f"prod-{i:04d}"
        products[pid] = {
            "id": pid,
            "name": f"{rng.choice(adjectives)} {rng.choice(nouns)}",
            "price": round(rng.uniform(4.99, 249.0), 2),
            "url": f"https://shop.example.com/p/{pid}",
            "image_url": f"https://cdn.example.com/img/{pid}.jpg",
            "category": rng.choice(CATEGORIES),
            "in_stock": rng.random() < 0.85,
        }
    stores: dict[str, dict[str, Any]] = {}
    for i in range(1, 31):
        country = COUNTRIES[rng.randrange(len(COUNTRIES))]
        sid = f"store-{i:02d}"
        stores[sid] = {
            "id": sid,
            "name": f"Tajo {country.cities[i % 3]} #{i}",
            "city": country.cities[i % 3],
            "country": country.code,
            "latitude": round(rng.uniform(-40, 60), 4),
            "longitude": round(rng.uniform(-120, 140), 4),
            "opened_at": iso_z(t0 - rng.randrange(100, 3000) * DAY_S),
        }
    return {
        "products": {
            "name": "products",
            "description": "Product catalog",
            "fields": [
                {"name": "id", "type": "string"},
                {"name": "name", "type": "string"},
                {"name": "price", "type": "number"},
                {"name": "url", "type": "string"},
                {"name": "image_url", "type": "string"},
                {"name": "category", "type": "string"},
                {"name": "in_stock", "type": "boolean"},
            ],  # fmt: skip
            "updated_at": t0 - 2 * DAY_S,
            "items": products,
        },
        "stores": {
            "name": "stores",
            "description": "Physical stores",
            "fields": [
                {"name": "id", "type": "string"},
                {"name": "name", "type": "string"},
                {"name": "city", "type": "string"},
                {"name": "country", "type": "string"},
                {"name": "latitude", "type": "number"},
                {"name": "longitude", "type": "number"},
                {"name": "opened_at", "type": "time"},
            ],  # fmt: skip
            "updated_at": t0 - 30 * DAY_S,
            "items": stores,
        },
    }


# ------------------------------------------------------------------ daily series
def _day_rng(seed: int, key: str, day: date) -> random.Random:
    # A str seed is hashed with SHA-512 by random.Random: stable across runs and processes.
    return random.Random(f"{seed}:{key}:{day.isoformat()}")


def scale_counts(value: Any, fraction: float) -> Any:
    """Scale every number in a stats tree (ints stay ints) for a day that is not over yet."""
    if isinstance(value, bool) or fraction >= 1.0:
        return value
    if isinstance(value, int):
        return int(value * fraction)
    if isinstance(value, float):
        return round(value * fraction, 2)
    if isinstance(value, dict):
        return {
            k: v if k in ("time", "name", "variation_api_id", "variation_name") else scale_counts(v, fraction)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scale_counts(v, fraction) for v in value]
    return value


def segment_size_on(world: BrazeWorld, segment: SegmentDef, day: date) -> int:
    """An estimate, like Braze's: the seeded size drifted back in time with daily noise."""
    age = (world.today - day).days
    if segment.rule == "listed":
        return segment.seeded_size if day >= utc_day(segment.created_at) else 0
    if age <= 0:
        return segment.seeded_size  # today's estimate is the size the world was seeded with
    rng = _day_rng(world.seed, segment.id, day)
    trend = 1.0 - 0.0005 * max(age, 0)  # segments grew ~20 % over the 400 days
    return max(0, round(segment.seeded_size * trend * rng.uniform(0.985, 1.015)))


def sends_on(campaign: Mapping[str, Any], day: date) -> bool:
    """Whether a campaign sends on that day (its cadence within its first and last send)."""
    first, last = campaign["first_sent"], campaign["last_sent"]
    if first is None or day < utc_day(first):
        return False
    if last is not None and day > utc_day(last):
        return False
    cadence = campaign["cadence"]
    if cadence == "weekly":
        return (
            day.weekday() == campaign["weekday"]
            or day == utc_day(first)
            or (last is not None and day == utc_day(last))
        )
    return cadence in ("daily", "burst", "once")


def _email_stats(rng: random.Random, sent: int) -> dict[str, int]:
    bounces = int(sent * rng.uniform(0.005, 0.03))
    delivered = sent - bounces
    unique_opens = int(delivered * rng.uniform(0.15, 0.45))
    unique_clicks = int(unique_opens * rng.uniform(0.05, 0.3))
    return {
        "sent": sent,
        "delivered": delivered,
        "opens": unique_opens + int(unique_opens * rng.uniform(0.1, 0.6)),
        "unique_opens": unique_opens,
        "clicks": unique_clicks + int(unique_clicks * rng.uniform(0.05, 0.4)),
        "unique_clicks": unique_clicks,
        "unsubscribes": int(delivered * rng.uniform(0.0, 0.004)),
        "bounces": bounces,
        "reported_spam": int(delivered * rng.uniform(0.0, 0.0005)),
    }


def channel_stats(channel: str, rng: random.Random, sent: int) -> dict[str, Any]:
    """One variant's numbers for one channel, in the shape Braze uses for that channel."""
    if channel == "email":
        return _email_stats(rng, sent)
    if channel.endswith("_push"):
        bounces = int(sent * rng.uniform(0.0, 0.05))
        direct = int((sent - bounces) * rng.uniform(0.02, 0.1))
        return {
            "sent": sent,
            "direct_opens": direct,
            "total_opens": direct + int(direct * rng.uniform(0.2, 1.0)),
            "bounces": bounces,
            "body_clicks": int(direct * rng.uniform(0.3, 0.9)),
        }
    if channel == "webhook":
        return {"sent": sent, "errors": int(sent * rng.uniform(0.0, 0.01))}
    if channel == "sms":
        rejected = int(sent * rng.uniform(0.0, 0.02))
        failed = int(sent * rng.uniform(0.0, 0.02))
        return {
            "sent": sent,
            "sent_to_carrier": sent - rejected,
            "delivered": sent - rejected - failed,
            "rejected": rejected,
            "delivery_failed": failed,
            "clicks": int(sent * rng.uniform(0.0, 0.05)),
            "opt_out": int(sent * rng.uniform(0.0, 0.01)),
            "help": int(sent * rng.uniform(0.0, 0.002)),
        }
    if channel == "content_cards":
        impressions = int(sent * rng.uniform(0.3, 0.9))
        unique_impressions = int(impressions * rng.uniform(0.6, 0.95))
        clicks = int(impressions * rng.uniform(0.02, 0.1))
        dismissals = int(impressions * rng.uniform(0.05, 0.2))
        return {
            "sent": sent,
            "total_clicks": clicks,
            "total_dismissals": dismissals,
            "total_impressions": impressions,
            "unique_clicks": int(clicks * 0.9),
            "unique_dismissals": int(dismissals * 0.9),
            "unique_impressions": unique_impressions,
        }
    return {"sent": sent}


def campaign_day(world: BrazeWorld, campaign: Mapping[str, Any], day: date) -> dict[str, Any]:
    """One /campaigns/data_series entry for a whole day: a pure function of (seed, id, day)."""
    rng = _day_rng(world.seed, campaign["id"], day)
    active = sends_on(campaign, day)
    volume = 0
    if active:
        factor = {"daily": 0.08, "weekly": 1.0, "burst": 0.6, "once": 1.0}.get(campaign["cadence"], 0.0)
        volume = int(campaign["audience"] * factor * rng.uniform(0.7, 1.3))
    weights = [v["weight"] for v in campaign["variants"]]
    total_weight = sum(weights)
    in_control = int(volume * 0.1) if campaign["control_id"] else 0
    messages: dict[str, list[dict[str, Any]]] = {ch: [] for ch in campaign["channels"]}
    recipients = 0
    multivariate = len(campaign["variants"]) > 1 or campaign["control_id"] is not None
    for variant, weight in zip(campaign["variants"], weights, strict=True):
        share = (volume - in_control) * weight // total_weight
        recipients += share
        for channel, mid in variant["messages"].items():
            entry: dict[str, Any] = {"variation_api_id": mid}
            if multivariate:
                entry["variation_name"] = variant["name"]
            entry.update(channel_stats(channel, rng, share))
            messages[channel].append(entry)
    if campaign["control_id"]:
        messages[campaign["channels"][0]].append(
            {"variation_api_id": campaign["control_id"], "variation_name": "Control", "enrolled": in_control}
        )
    conversions = int(recipients * rng.uniform(0.01, 0.06))
    return {
        "time": day.isoformat(),
        "unique_recipients": recipients,
        "revenue": round(conversions * rng.uniform(15, 80), 2),
        "conversions": conversions,
        "conversions_by_send_time": int(conversions * rng.uniform(0.8, 1.0)),
        "messages": messages,
    }


def _canvas_block(rng: random.Random, entries: int) -> dict[str, Any]:
    conversions = int(entries * rng.uniform(0.02, 0.1))
    return {
        "revenue": round(conversions * rng.uniform(10, 60), 2),
        "conversions": conversions,
        "conversions_by_entry_time": int(conversions * rng.uniform(0.8, 1.0)),
        "entries": entries,
    }


def canvas_day(
    world: BrazeWorld,
    canvas: Mapping[str, Any],
    day: date,
    *,
    variant_breakdown: bool,
    step_breakdown: bool,
    include_deleted_steps: bool,
) -> dict[str, Any]:
    """One /canvas/data_series `stats` entry; the numbers do not depend on the flags asked."""
    rng = _day_rng(world.seed, canvas["id"], day)
    first, last = canvas["first_entry"], canvas["last_entry"]
    running = day >= utc_day(first) and (last is None or day <= utc_day(last))
    entries = int(canvas["audience"] * rng.uniform(0.6, 1.4)) if running else 0
    variant_numbers = []
    left = entries
    for index, variant in enumerate(canvas["variants"]):
        share = left if index == len(canvas["variants"]) - 1 else entries // len(canvas["variants"])
        left -= share
        variant_numbers.append((variant, _canvas_block(rng, share)))
    total = {
        "revenue": round(sum(b["revenue"] for _, b in variant_numbers), 2),
        "conversions": sum(b["conversions"] for _, b in variant_numbers),
        "conversions_by_entry_time": sum(b["conversions_by_entry_time"] for _, b in variant_numbers),
        "entries": entries,
    }
    step_numbers = []
    reach = entries
    for step in canvas["steps"]:
        reach = int(reach * rng.uniform(0.6, 0.95))
        block = _canvas_block(rng, reach)
        del block["entries"]
        block["messages"] = {
            message["channel"]: [channel_stats(message["channel"], rng, reach)]
            for message in step["messages"].values()
        }
        step_numbers.append((step, block))
    out: dict[str, Any] = {"time": day.isoformat(), "total_stats": total}
    if variant_breakdown:
        out["variant_stats"] = {v["id"]: {"name": v["name"], **block} for v, block in variant_numbers}
    if step_breakdown:
        out["step_stats"] = {
            s["id"]: {"name": s["name"], **block}
            for s, block in step_numbers
            if include_deleted_steps or not s["deleted"]
        }
    return out
