# Copies a fixed selection of real text files (sorted walk, each under 512 kB) from SRC into OUT
# until LIMIT_MB: the clean corpus the secret-scanning benchmarks read, the same bytes each run.
# usage: python3 hack/corpus.py SRC OUT LIMIT_MB [--config]   (--config: .env, .cfg, .ini too)
import os, shutil, sys

src, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]) * 1_000_000
SUFFIXES = ('.rs', '.toml', '.md', '.py', '.json', '.yml', '.yaml', '.sh', '.c', '.h')
if '--config' in sys.argv[4:]:
    SUFFIXES += ('.env', '.cfg', '.ini')
total = 0
for d, dirs, files in sorted(os.walk(src)):
    dirs.sort()
    for f in sorted(files):
        if not f.endswith(SUFFIXES):
            continue
        p = os.path.join(d, f)
        size = os.path.getsize(p)
        if size > 512_000:
            continue
        dst = os.path.join(out, os.path.relpath(p, src))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(p, dst)
        total += size
        if total >= limit:
            sys.exit(0)
