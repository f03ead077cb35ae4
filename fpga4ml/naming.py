"""Names and text from a model file, made safe for the files we generate (C++, Verilog, Tcl, JSON).

Layer, input and output names come from model files (Keras, ONNX, PyTorch) and are free text: a
newline, a trailing backslash or a ``*/`` in a name copied into generated code would end a comment
and turn the rest of the name into code that g++ or Verilator compiles (and csim loads). The graph
keeps the user's names (they are the keys of the hls4ml config); the writers map them here:

* `Names` allocates unique, legal identifiers (``[A-Za-z_][A-Za-z0-9_]*``, no C++ or Verilog
  keyword, no name of the vendor headers or of the generated helper code, no ``__``, at most
  `MAX_IDENTIFIER` characters); names that collide after this mapping (``in-1`` and ``in_1``), also
  when they differ only in case (file names on case-insensitive file systems), get suffixes.
* `comment_text` is the only form in which an original name appears in generated text: an inert
  escape (``%XX`` of the UTF-8 bytes of every character outside a small ASCII set), safe inside
  C++, Verilog and Tcl comments and reversible with `unescape_comment_text`.
* `comment_line` guards each comment line the writers emit: whatever reaches it cannot end the
  comment or continue it onto the next line.
* `check_project_name` validates ``project_name`` (the HLS top function and the Verilog top module).
* `json_text` writes strict JSON (no NaN or Infinity: non-finite numbers become null).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable

#: C++20 keywords and alternative tokens, and names the C and C++ headers define as macros
CPP_KEYWORDS = frozenset('''
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class
co_await co_return co_yield compl concept const consteval constexpr constinit const_cast continue decltype
default delete do double dynamic_cast else enum explicit export extern false final float for friend goto if
import inline int long module mutable namespace new noexcept not not_eq nullptr operator or or_eq override
private protected public register reinterpret_cast requires return short signed sizeof static static_assert
static_cast struct switch template this thread_local throw true try typedef typeid typename union unsigned
using virtual void volatile wchar_t while xor xor_eq
NULL EOF assert errno offsetof setjmp stderr stdin stdout va_arg va_end va_start
'''.split())

#: Verilog-2005 and SystemVerilog-2017 keywords (IEEE 1364-2005, IEEE 1800-2017 annex B)
VERILOG_KEYWORDS = frozenset('''
accept_on alias always always_comb always_ff always_latch and assert assign assume automatic before begin bind
bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle checker class clocking cmos config
const constraint context continue cover covergroup coverpoint cross deassign default defparam design disable
dist do edge else end endcase endchecker endclass endclocking endconfig endfunction endgenerate endgroup
endinterface endmodule endpackage endprimitive endprogram endproperty endspecify endsequence endtable endtask
enum event eventually expect export extends extern final first_match for force foreach forever fork forkjoin
function generate genvar global highz0 highz1 if iff ifnone ignore_bins illegal_bins implements implies import
incdir include initial inout input inside instance int integer interconnect interface intersect join join_any
join_none large let liblist library local localparam logic longint macromodule matches medium modport module
nand negedge nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output package packed
parameter pmos posedge primitive priority program property protected pull0 pull1 pulldown pullup
pulsestyle_ondetect pulsestyle_onevent pure rand randc randcase randsequence rcmos real realtime ref reg
reject_on release repeat restrict return rnmos rpmos rtran rtranif0 rtranif1 s_always s_eventually s_nexttime
s_until s_until_with scalared sequence shortint shortreal showcancelled signed small soft solve specify
specparam static string strong strong0 strong1 struct super supply0 supply1 sync_accept_on sync_reject_on
table tagged task this throughout time timeprecision timeunit tran tranif0 tranif1 tri tri0 tri1 triand trior
trireg type typedef union unique unique0 unsigned until until_with untyped use uwire var vectored virtual void
wait wait_order wand weak weak0 weak1 while wildcard wire with within wor xnor xor
'''.split())

#: names the generated code or the headers it includes define: the HLS helpers and vendor types,
#: the Verilog control ports and fixed modules, the Verilator harness's class and types
GENERATED_NAMES = frozenset('''
main std hls ap_int ap_uint ap_fixed ap_ufixed from_bits packet input_t result_t INLINE NDEBUG size_t
int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t
run_sample run_samples read_values
clk rst ce valid_in valid_out valid_sr unused_bits unused_ctrl fpga4ml_window fpga4ml_collect
Vdut EData CData SData IData QData WData
'''.split())

#: locals in scope where the generated C++ calls a layer function (the io_stream wrappers: packets a0, a1,
#: ..., b, the position p, the result r, the streams x0, ..., y0, ...): a layer of that name could not be called
LOCAL_NAMES = frozenset({'b', 'p', 'r'})
_LOCAL_NUMBERED = re.compile(r'(a|x|y|in|out)[0-9]+')

KEYWORDS = CPP_KEYWORDS | VERILOG_KEYWORDS | GENERATED_NAMES
RESERVED = KEYWORDS | LOCAL_NAMES
#: the locals of the scope that calls the top function (run_sample: x, y, in0, out0, ...)
TOP_CALLER_NAMES = frozenset({'x', 'y'})

#: identifier prefixes of the vendor headers' macros and types (and C++'s reserved '_X', '__')
VENDOR_PREFIXES = ('ap_', 'AP_', '_AP', 'hls_', 'HLS_', 'ssdm', 'SSDM', '_')

#: longest identifier allocated (before a uniqueness suffix); identifiers also name files
MAX_IDENTIFIER = 80

IDENTIFIER = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')

#: characters kept as they are by `comment_text`; everything else becomes %XX (UTF-8 bytes)
COMMENT_SAFE = frozenset('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.,:;/+=()<>@ -')


# ---------------------------------------------------------------------------- text in comments

def comment_text(text: Any) -> str:
    """`text` as an inert escape for comments: characters outside `COMMENT_SAFE` become %XX of their UTF-8 bytes.

    Newlines, backslashes (line continuation), ``*`` (``*/``), ``?`` (trigraphs), ``$``, ``[``, ``]``,
    braces and quotes (Tcl substitution), ``%`` itself, control characters, NUL and non-ASCII
    characters are all escaped, so the result cannot end or extend a C++, Verilog or Tcl comment.
    """
    out = []
    for ch in str(text):
        if ch in COMMENT_SAFE:
            out.append(ch)
        else:
            out.extend(f'%{b:02X}' for b in ch.encode('utf-8', 'surrogatepass'))
    return ''.join(out)


def unescape_comment_text(text: str) -> str:
    """The original of a `comment_text` escape."""
    return re.sub(rb'%([0-9A-F]{2})', lambda m: bytes([int(m.group(1), 16)]),
                  text.encode('ascii')).decode('utf-8', 'surrogatepass')


_COMMENT_BREAKERS = re.compile(r'[^\x20-\x7e]|\\|\?\?|\*/')


def comment_line(text: str) -> str:
    """A comment line as written: every character or sequence that could end it or continue it escaped.

    The writers pass whole comment lines through this guard (names in them are already
    `comment_text` escapes, which it leaves unchanged): control characters, line breaks, non-ASCII,
    a backslash (line continuation in C++ and Verilog), ``??`` (a trigraph can spell a backslash)
    and ``*/`` become %XX escapes.
    """
    return _COMMENT_BREAKERS.sub(lambda m: comment_text(m.group(0)) if m.group(0) != '??' else '?%3F', text)


# ---------------------------------------------------------------------------- identifiers

def is_reserved(name: str, local_names: frozenset[str] = LOCAL_NAMES) -> bool:
    """True when `name` is a keyword, a name the generated code or its headers use, or one of `local_names`."""
    return (name in KEYWORDS or name in local_names or bool(_LOCAL_NUMBERED.fullmatch(name))
            or name.startswith(VENDOR_PREFIXES))


def is_keyword(name: str) -> bool:
    """True when `name` is a C++ or Verilog/SystemVerilog keyword (or a C macro name such as NULL)."""
    return name in CPP_KEYWORDS or name in VERILOG_KEYWORDS


def legal_identifier(want: Any) -> str:
    """A legal identifier resembling `want` (other characters become '_', no '__'); it may still be reserved."""
    base = re.sub(r'[^A-Za-z0-9_]+', '_', str(want))
    base = re.sub(r'__+', '_', base)
    if not base.strip('_'):
        base = 'name'  # nothing ASCII left (a non-ASCII name): the suffixes keep such names apart
    if base[0].isdigit() or base.startswith(VENDOR_PREFIXES):
        base = 'l' + base  # '_X' names are C++'s; ap_/AP_/hls_ names belong to the vendor headers
    return base[:MAX_IDENTIFIER]


class Names:
    """Allocates unique legal identifiers (C++ and Verilog) from free-text names, deterministically.

    Uniqueness ignores case (identifiers also name files), reserved names (`RESERVED`, vendor
    prefixes, and any given `reserved`) are never handed out.
    """

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self.reserved = frozenset(reserved)
        self.taken: set[str] = {name.lower() for name in self.reserved}

    def free(self, ident: str) -> bool:
        """True when `ident` can still be handed out."""
        return ident.lower() not in self.taken and not is_reserved(ident)

    def new(self, want: Any) -> str:
        """A fresh identifier for `want` (its legal form, with a suffix _2, _3, ... when taken)."""
        base = legal_identifier(want)
        ident, n = base, 1
        while not self.free(ident):
            n += 1
            ident = f'{base.rstrip("_")}_{n}'
        self.taken.add(ident.lower())
        return ident


def check_identifier(value: Any, what: str, local_names: frozenset[str] = LOCAL_NAMES) -> str:
    """`value` if it is an ASCII identifier that is no C++/Verilog keyword or reserved name; else a ValueError."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ValueError(f'{what} must be an ASCII identifier ([A-Za-z_][A-Za-z0-9_]*), got {value!r}')
    if value.startswith(VENDOR_PREFIXES) or '__' in value:
        raise ValueError(f'{what} {value!r} starts with a prefix reserved by C++ or the vendor headers '
                         f'({", ".join(VENDOR_PREFIXES)}) or contains "__"; choose another identifier')
    if is_reserved(value, local_names):
        raise ValueError(f'{what} {value!r} is a C++ or Verilog keyword or a name the generated code uses; '
                         f'choose another identifier, e.g. {value + "_prj"!r}')
    if len(value) > MAX_IDENTIFIER:
        raise ValueError(f'{what} must be at most {MAX_IDENTIFIER} characters, got {len(value)}: {value!r}')
    return value


def check_project_name(value: Any) -> str:
    """`value` if it can name the HLS top function and the Verilog top module; else a ValueError saying why."""
    return check_identifier(value, 'project_name', TOP_CALLER_NAMES)


_FILE_NAME = re.compile(r'[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*')


def check_file_name(value: Any, what: str) -> str:
    """`value` if it is a relative path of plain ASCII names (no '..', no spaces, quotes or separators of
    tool scripts) that can be written into a Verilator command or a Yosys script; else a ValueError."""
    if (not isinstance(value, str) or not _FILE_NAME.fullmatch(value)
            or any(part in ('.', '..') for part in value.split('/'))):
        raise ValueError(f'{what} must be a relative path inside the design directory made of the characters '
                         f'[A-Za-z0-9_.+-] and "/" (no "..", spaces or quotes), got {value!r}')
    return value


# ---------------------------------------------------------------------------- JSON

def finite(value: Any) -> Any:
    """`value` with every non-finite float (NaN, +-Infinity) replaced by None, numpy scalars as Python ones."""
    if hasattr(value, 'item') and getattr(value, 'ndim', None) == 0:
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_text(data: Any, indent: int | None = 2, default=None) -> str:
    """Strict JSON text of `data` (non-finite numbers become null) with a final newline."""
    return json.dumps(finite(data), indent=indent, allow_nan=False, default=default) + '\n'
