"""A .tflite as C++ source to compile into firmware, as the TFLM examples embed their models.

`to_c_source` writes the bytes as a 16-byte-aligned `const unsigned char` array (TFLM reads
the flatbuffer in place and needs it aligned) with its length, and a header declaring both.
The .cc includes the header first, so the `const` definitions get external linkage in C++.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import re

from tinycomp.errors import InvalidValue

BYTES_PER_LINE = 12
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# C and C++ keywords and alternative tokens: valid-looking identifiers that do not compile.
KEYWORDS = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class
compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype
default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline
int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
reinterpret_cast requires restrict return short signed sizeof static static_assert static_cast struct switch
template this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
wchar_t while xor xor_eq _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn
_Static_assert _Thread_local
""".split())


def check_symbol(symbol: str) -> str:
    """`symbol` if it can name a C/C++ variable; an InvalidValue (field "symbol") saying why not otherwise."""
    hint = "use letters, digits and underscores, not starting with a digit, e.g. g_model"
    if not IDENTIFIER.match(symbol or ""):
        raise InvalidValue(f"{symbol!r} is not a C identifier", "symbol", hint)
    if symbol in KEYWORDS:
        raise InvalidValue(f"{symbol!r} is a C/C++ keyword", "symbol", "choose another name, e.g. g_model")
    if any(re.match(r"_[A-Z_]|.*__", name) for name in (symbol, f"{symbol}_len")):
        raise InvalidValue(f"{symbol!r} is reserved for the compiler (leading underscore + capital, or a double "
                         "underscore)", "symbol", "choose another name, e.g. g_model")
    return symbol


def include_guard(header_name: str) -> str:
    """MODEL_DATA_H_ for model_data.h (and for include/model_data.h)."""
    base = header_name.replace("\\", "/").rsplit("/", 1)[-1]
    guard = re.sub(r"[^A-Za-z0-9]", "_", base).upper().strip("_") + "_"
    return guard if re.match(r"[A-Z]", guard) else f"TINYCOMP_{guard}"


def hex_lines(data: bytes) -> list[str]:
    """The bytes as `0x1c, 0x00, ...` lines of BYTES_PER_LINE."""
    return [", ".join(f"0x{b:02x}" for b in data[i:i + BYTES_PER_LINE]) + ","
            for i in range(0, len(data), BYTES_PER_LINE)]


def to_c_source(model_bytes: bytes, symbol: str = "g_model", header_name: str = "model_data.h",
                source: str = "model") -> tuple[str, str]:
    """The .cc text (array and length) and the .h text (extern declarations, include guard)."""
    check_symbol(symbol)
    data = bytes(model_bytes)
    comment = (f"// {source} as a C array: {len(data):,} bytes, written by `tinycomp export`. Do not edit.\n"
               "// TFLM reads the flatbuffer in place: keep it 16-byte aligned and in flash (const).\n")
    guard = include_guard(header_name)
    header = (f"{comment}\n#ifndef {guard}\n#define {guard}\n\n"
              f"extern const unsigned char {symbol}[];\n"
              f"extern const unsigned int {symbol}_len;\n\n"
              f"#endif  // {guard}\n")
    body = "\n".join(f"    {line}" for line in hex_lines(data))
    cc = (f"{comment}\n#include \"{header_name}\"\n\n"
          f"alignas(16) const unsigned char {symbol}[] = {{\n{body}\n}};\n"
          f"const unsigned int {symbol}_len = {len(data)};\n")
    return cc, header


def parse_c_array(cc_text: str) -> bytes:
    """The bytes of the first `{ 0x.., ... }` array in C source (the inverse of `to_c_source`)."""
    start = cc_text.index("[] = {")
    end = cc_text.index("}", start)
    return bytes(int(token, 16) for token in re.findall(r"0x([0-9a-fA-F]{2})", cc_text[start:end]))
