#!/usr/bin/python3
"""Build a small public-domain English training corpus from Debian packages.

Sources (downloaded with `apt-get download`, unpacked with `dpkg -x`, nothing
is installed):
  r-cran-janeaustenr  Jane Austen's six novels (the texts are public domain;
                      the R packaging is MIT, (c) 2016-2017 Julia Silge).
                      Stored as an R lazy-load database (data/Rdata.rdb/.rdx)
                      in R's XDR serialization format.
  sword-text-web      World English Bible, SWORD module engWEB2015eb (public
                      domain; Debian packaging GPL-2+). Stored as a zText
                      module: .bzs/.bzv index files + zlib-compressed blocks
                      of OSIS XML.

Writes train/data/austen.txt and train/data/web.txt: paragraphs one per line,
separated by blank lines.
usage: /usr/bin/python3 train/corpus.py [--out train/data]
"""
import argparse, bz2, glob, gzip, html, io, lzma, os, re, struct
import subprocess, sys, tempfile, zlib

# ---------------------------------------------------------------------------
# R serialization format (XDR only): just enough for data objects.

class RVec(list):
    """An R vector (or pairlist) with its attributes in .attr."""
    attr = None

class RReader:
    def __init__(self, data):
        self.f = io.BytesIO(data)
        self.refs = []

    def int(self):
        return struct.unpack('>i', self.f.read(4))[0]

    def length(self):
        n = self.int()
        if n == -1:  # long vector: two ints
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def header(self):
        fmt = self.f.read(2)
        if fmt != b'X\n':
            raise ValueError('only XDR serialization is supported, got %r' % fmt)
        version = self.int()
        self.int(); self.int()  # writer R version, minimal R version
        if version == 3:
            self.f.read(self.int())  # native encoding name
        return self

    def attrs(self):
        a = self.item()  # a pairlist: RVec of values, names in .attr
        return dict(zip(a.attr['tags'], a))

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if t == 254:   # NULL
            return None
        if t in (253, 252, 251, 250, 242, 241):  # global/empty/base envs etc.
            return None
        if t == 255:   # reference to an earlier symbol/environment
            i = flags >> 8
            return self.refs[(i or self.int()) - 1]
        if t == 1:     # SYMSXP
            s = self.item()
            self.refs.append(s)
            return s
        if t == 9:     # CHARSXP
            n = self.int()
            if n == -1:
                return None  # NA_character_
            b = self.f.read(n)
            return b.decode('latin-1' if (flags >> 12) & 4 else 'utf-8')
        if t in (2, 6, 239, 240):  # pairlist / language: a linked list
            out, tags = RVec(), []
            while t not in (254,):
                a = self.item() if has_attr else None
                tags.append(self.item() if has_tag else None)
                out.append(self.item())
                flags = self.int()
                t = flags & 0xFF
                has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
            out.attr = {'tags': tags}
            return out
        if t == 4:     # ENVSXP
            env = {}
            self.refs.append(env)
            self.int()  # locked
            self.item(); frame = self.item(); self.item()  # enclos, frame, hashtab
            a = self.item()
            if frame is not None:
                env.update(zip(frame.attr['tags'], frame))
            return env
        if t in (10, 13):  # logical, integer
            n = self.length()
            v = RVec(struct.unpack('>%di' % n, self.f.read(4 * n)))
        elif t == 14:  # double
            n = self.length()
            v = RVec(struct.unpack('>%dd' % n, self.f.read(8 * n)))
        elif t == 24:  # raw
            v = RVec(self.f.read(self.length()))
        elif t in (16, 19, 20):  # character, list, expression
            v = RVec(self.item() for _ in range(self.length()))
        elif t == 238:  # ALTREP: class info, state, attributes
            info, state, a = self.item(), self.item(), self.item()
            cls = info[0]
            if cls == 'compact_intseq':
                n, start, step = (int(x) for x in state)
                v = RVec(range(start, start + n * step, step))
            elif cls in ('wrap_string', 'wrap_integer', 'wrap_real',
                         'wrap_logical', 'deferred_string'):
                v = RVec(state[0] if isinstance(state, list) else state)
            else:
                raise ValueError('unsupported ALTREP class %s' % cls)
            if a is not None:
                v.attr = dict(zip(a.attr['tags'], a))
            return v
        else:
            raise ValueError('unsupported R SEXP type %d' % t)
        if has_attr:
            v.attr = self.attrs()
        return v

def decompress(data):
    """Whole-file compression of .rds/.rda: gzip, bzip2, xz or none."""
    if data[:2] == b'\x1f\x8b':
        return gzip.decompress(data)
    if data[:3] == b'BZh':
        return bz2.decompress(data)
    if data[:6] == b'\xfd7zXZ\x00':
        return lzma.decompress(data)
    return data

def read_rds(path):
    return RReader(decompress(open(path, 'rb').read())).header().item()

def read_rda(path):
    """An .rda file: 'RDX2\\n' or 'RDX3\\n' then a tagged pairlist."""
    data = decompress(open(path, 'rb').read())
    assert data[:3] == b'RDX', 'not an .rda file'
    pl = RReader(data[5:]).header().item()
    return dict(zip(pl.attr['tags'], pl))

def read_lazyload(prefix):
    """An R lazy-load database: prefix.rdx (index) + prefix.rdb (blobs)."""
    idx = read_rds(prefix + '.rdx')
    idx = dict(zip(idx.attr['names'], idx))
    blob = open(prefix + '.rdb', 'rb').read()
    out = {}
    for name, (pos, n) in zip(idx['variables'].attr['names'], idx['variables']):
        chunk = blob[pos:pos + n]
        ulen, kind = struct.unpack('>i', chunk[:4])[0], chunk[4:5]
        if kind == b'2':
            data = bz2.decompress(chunk[5:])
        elif kind == b'X':
            data = lzma.decompress(chunk[5:])
        elif kind == b'0':
            data = chunk[5:]
        elif kind == b'Z':
            data = zlib.decompress(chunk[5:])
        else:  # plain zlib right after the length
            data = zlib.decompress(chunk[4:])
        assert len(data) == ulen
        out[name] = RReader(data).header().item()
    return out

# ---------------------------------------------------------------------------
# SWORD zText module

def sword_entries(moddir):
    """Yield the raw OSIS text of every index entry, OT then NT, in order."""
    for testament in ('ot', 'nt'):
        p = os.path.join(moddir, testament)
        if not os.path.exists(p + '.bzs'):
            continue
        bzs, bzz, bzv = (open(p + e, 'rb').read() for e in ('.bzs', '.bzz', '.bzv'))
        cache = {}
        for k in range(len(bzv) // 10):
            b, off, size = struct.unpack_from('<IIH', bzv, 10 * k)
            if size == 0:
                continue
            if b not in cache:
                cache.clear()
                start, clen, ulen = struct.unpack_from('<III', bzs, 12 * b)
                cache[b] = zlib.decompress(bzz[start:start + clen])
                assert len(cache[b]) == ulen
            yield cache[b][off:off + size].decode('utf-8')

def osis_tag(m):
    """Map one OSIS tag to: nothing, a line break (\0) or a blank line."""
    name, attrs = m.group(1), m.group(2)
    if name in ('chapter', 'div') and 'sID=' in attrs and (
            name == 'chapter' or 'type="book"' in attrs):
        return '\0\0'
    if name in ('div', 'l', 'lg') and 'sID=' in attrs and (
            name != 'div' or 'type="x-p"' in attrs):
        return '\0'
    if name in ('lb', 'title', '/title', 'item', '/item'):
        return '\0'
    return ''

def osis_to_text(entries):
    """Strip OSIS markup: drop footnotes, keep the words; paragraphs, poetry
    lines and titles become lines; chapters and books start after a blank
    line."""
    s = ''.join(e if e.endswith(' ') else e + ' ' for e in entries)
    s = re.sub(r'<note[^>]*>.*?</note>', '\x01', s, flags=re.S)
    s = re.sub(r'<(/?[A-Za-z]+)([^>]*)>', osis_tag, s)
    # a footnote glued between two words ("God<note>..</note>created")
    s = re.sub('(\\w)\x01(?=\\w)', '\\1 ', s).replace('\x01', '')
    s = re.sub(r'[ \t\r\n]+', ' ', html.unescape(s))
    s = re.sub(r' *\0[ \0]*\0 *', '\n\n', s)
    s = re.sub(r' *\0 *', '\n', s)
    return '\n'.join(l.strip() for l in s.strip().split('\n')) + '\n'

# ---------------------------------------------------------------------------

def fetch(pkg, tmp):
    subprocess.run(['apt-get', 'download', pkg], cwd=tmp, check=True,
                   stdout=subprocess.DEVNULL)
    deb = glob.glob(os.path.join(tmp, pkg + '_*.deb'))[0]
    root = os.path.join(tmp, pkg)
    subprocess.run(['dpkg', '-x', deb, root], check=True)
    return root

def austen(root):
    d = glob.glob(os.path.join(root, 'usr/lib/R/site-library/janeaustenr/data'))[0]
    books = read_lazyload(os.path.join(d, 'Rdata'))
    order = ['sensesensibility', 'prideprejudice', 'mansfieldpark', 'emma',
             'northangerabbey', 'persuasion']
    out = []
    for name in order:
        para = []
        for line in books[name] + ['']:
            line = re.sub(' +', ' ', (line or '').strip())
            if line:
                para.append(line)
            elif para:
                out.append(' '.join(para))
                para = []
        print('  %-17s %6d lines' % (name, len(books[name])))
    return '\n\n'.join(out) + '\n'

def web(root):
    d = glob.glob(os.path.join(root, 'usr/share/sword/modules/texts/ztext/*'))[0]
    return osis_to_text(sword_entries(d))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data'))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)  # so apt's _apt user can write there
        for name, pkg, fn in (('austen.txt', 'r-cran-janeaustenr', austen),
                              ('web.txt', 'sword-text-web', web)):
            text = fn(fetch(pkg, tmp))
            path = os.path.join(args.out, name)
            with open(path, 'w', encoding='utf-8') as f:
                f.write(text)
            print('%s: %d bytes, %d chars, %d words' % (
                path, len(text.encode()), len(text), len(text.split())))

if __name__ == '__main__':
    main()
