#!/usr/bin/python3
"""Checks train/train.py at a tiny scale (~20 s): a few steps train and resume deterministically, the
HF folder converts with export.py, and razor's logits match the torch model's.

usage: /usr/bin/python3 train/test_train.py     (prints "N passed, N failed"; exit 1 on failure)
"""
import contextlib, io, os, shutil, subprocess, sys, tempfile
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
try:
    import torch
except ImportError:
    print('skipped: torch is not installed (apt-get install python3-torch)')
    sys.exit(0)
sys.path.insert(0, HERE)
import train  # noqa: E402

passed = failed = 0


def check(name, ok, detail=''):
    global passed, failed
    print(f'{"ok  " if ok else "FAIL"} {name} {detail}')
    passed, failed = passed + bool(ok), failed + (not ok)


def run_train(*argv):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        train.main(['--dim', '64', '--layers', '2', '--heads', '4', '--kv-heads', '2', '--hidden', '96',
                    '--seq-len', '64', '--batch', '2', '--lr', '3e-3', '--device', 'cpu', '--bf16', 'off',
                    '--eval-every', '1000', '--ckpt-every', '2', '--log-every', '1', *argv])
    return out.getvalue()


def load(folder):
    ck = torch.load(os.path.join(folder, 'ckpt.pt'), map_location='cpu')
    model = train.Llama(ck['config'])
    model.load_state_dict(ck['model'])
    return model.eval(), ck


def main():
    tmp = tempfile.mkdtemp(prefix='test_train.')
    try:
        run_checks(tmp)
    finally:
        shutil.rmtree(tmp)


def run_checks(tmp):
    data = os.path.join(tmp, 'data')
    os.makedirs(data)
    rng = np.random.default_rng(0)  # a fake token cache, so the test does not tokenize the corpus
    np.save(os.path.join(data, 'train.npy'), rng.integers(3, 512, 20000).astype(np.uint16))
    np.save(os.path.join(data, 'val.npy'), rng.integers(3, 512, 500).astype(np.uint16))
    with open(os.path.join(data, 'meta.json'), 'w') as f:
        f.write('{"val_bytes": 1000, "vocab": 512}')

    a, b = os.path.join(tmp, 'a'), os.path.join(tmp, 'b')
    log = run_train('--steps', '6', '--out', a, '--data', data)
    losses = [float(l.split()[3]) for l in log.splitlines() if l.split()[:1] == ['step'] and l.split()[2] == 'loss']
    check('training runs and the loss falls', len(losses) == 6 and losses[-1] < losses[0],
          f'{losses[0]:.3f} -> {losses[-1]:.3f}')
    run_train('--steps', '6', '--stop-at', '4', '--out', b, '--data', data)
    run_train('--steps', '6', '--out', b, '--data', data, '--resume')
    ma, ca = load(a)
    mb, cb = load(b)
    same = all(torch.equal(ca['model'][k], cb['model'][k]) for k in ca['model'])
    check('4 steps + resume to 6 == 6 steps', same and ca['step'] == cb['step'] == 6)

    hf = os.path.join(a, 'hf')
    check('HF folder written', os.path.exists(os.path.join(hf, 'config.json')) and
          os.path.exists(os.path.join(hf, 'model.safetensors')))
    out_bin = os.path.join(tmp, 'model.bin')
    r = subprocess.run([sys.executable, os.path.join(TOP, 'export.py'), out_bin, '--hf', hf],
                       capture_output=True, text=True)
    check('export.py converts it', r.returncode == 0, r.stderr.strip()[-300:])
    if r.returncode != 0:
        return

    razor = os.path.join(TOP, 'razor')
    if not os.path.exists(razor):
        subprocess.run(['make', '-C', TOP, 'razor'], capture_output=True)
    ids = [1] + rng.integers(3, 512, 40).tolist()
    with open(os.path.join(tmp, 'ids.txt'), 'w') as f:
        f.write(' '.join(map(str, ids)))
    r = subprocess.run([razor, out_bin, '-m', 'logits', '-K', 'f32',
                        '-z', os.path.join(TOP, 'tests', 'sp512', 'tokenizer.bin'),
                        '-I', os.path.join(tmp, 'ids.txt'), '-o', os.path.join(tmp, 'logits.f32')],
                       capture_output=True, text=True)
    check('razor -m logits runs', r.returncode == 0, r.stderr.strip()[-300:])
    if r.returncode != 0:
        return
    got = np.fromfile(os.path.join(tmp, 'logits.f32'), dtype=np.float32).reshape(len(ids), -1)
    with torch.no_grad():
        want = ma(torch.tensor([ids]), chunk=16)[0].numpy()
    diff = float(np.abs(got - want).max())
    check('razor logits == torch logits', diff < 1e-4, f'(max abs diff {diff:.2e})')
    alibi(tmp, data, razor, ids)
    byte_level(tmp, razor)


def alibi(tmp, data, razor, ids):
    """--alibi: 5 heads (slopes for a count that is not a power of two), written in Baichuan's layout,
    exported with export.py --alibi; razor's logits equal torch's."""
    c = os.path.join(tmp, 'alibi')
    run_train('--steps', '3', '--out', c, '--data', data, '--alibi', '--dim', '80', '--heads', '5', '--kv-heads', '5')
    out_bin = os.path.join(tmp, 'alibi.bin')
    r = subprocess.run([sys.executable, os.path.join(TOP, 'export.py'), out_bin, '--hf', os.path.join(c, 'hf'),
                        '--alibi'], capture_output=True, text=True)
    check('an --alibi model exports as Baichuan (export.py --alibi)', r.returncode == 0, r.stderr.strip()[-300:])
    if r.returncode != 0:
        return
    r = subprocess.run([razor, out_bin, '-m', 'logits', '-K', 'f32', '-I', os.path.join(tmp, 'ids.txt'),
                        '-o', os.path.join(tmp, 'alibi.f32')], capture_output=True, text=True)
    check('razor -m logits runs on it', r.returncode == 0, r.stderr.strip()[-300:])
    if r.returncode != 0:
        return
    got = np.fromfile(os.path.join(tmp, 'alibi.f32'), dtype=np.float32).reshape(len(ids), -1)
    model, _ = load(c)
    with torch.no_grad():
        want = model(torch.tensor([ids]), chunk=16)[0].numpy()
    diff = float(np.abs(got - want).max())
    check('ALiBi: razor logits == torch logits', diff < 1e-4, f'(max abs diff {diff:.2e})')


def byte_level(tmp, razor):
    """--bytes: the corpus cached byte by byte, training rows whose tasks decode to text, and razor
    reading tokenizer.py --bytes' tokenizer.bin encodes exactly as train.Bytes does."""
    data = os.path.join(tmp, 'bytes_data')
    os.makedirs(data)
    text = 'It is a truth universally acknowledged, that a single man in possession of a good fortune.\n' * 60
    for name in ('austen.txt', 'web.txt'):
        with open(os.path.join(data, name), 'w') as f:
            f.write(text + 'Caf\u00e9 \u201cquoted\u201d.\n')
    out = os.path.join(tmp, 'bytes_run')
    log = run_train('--steps', '3', '--out', out, '--data', data, '--bytes')
    _, ck = load(out)
    check('--bytes trains a 259-id model on a byte cache', ck['config']['vocab'] == 259 and
          os.path.exists(os.path.join(data, 'bytes-train.npy')) and 'step 3/3' in log)
    train_ids = np.load(os.path.join(data, 'bytes-train.npy'))
    check('the byte cache is the text, byte for byte', bytes((train_ids[1:200] - 3).astype(np.uint8)).decode() == text[:199])
    mixer = train.Mixer(train.Bytes(), train_ids)
    row, scored = mixer.passkey(np.random.default_rng(3), 256)
    said = bytes((row[1:] - 3).astype(np.uint8)).decode('utf-8', 'replace')
    check('a pass key row asks for its key at the end', 'The pass key is ' in said and
          said.rstrip('.').endswith(said.split('The pass key is ')[1].split('.')[0]), said[-60:])
    generators(mixer)
    subprocess.run([sys.executable, os.path.join(HERE, 'tokenizer.py'), '--bytes', '--out', tmp], capture_output=True)
    subprocess.run([sys.executable, os.path.join(TOP, 'export.py'), os.path.join(tmp, 'bytes.bin'), '--hf',
                    os.path.join(out, 'hf')], capture_output=True)
    prompt = 'Caf\u00e9 au lait, \u201cs\u2019il vous pla\u00eet\u201d \U0001F600'
    r = subprocess.run([razor, os.path.join(tmp, 'bytes.bin'), '-m', 'tokenize', '-z', os.path.join(tmp, 'tokenizer.bin'),
                        '-i', prompt], capture_output=True, text=True)
    got = list(map(int, r.stdout.split())) if r.returncode == 0 else []
    check('razor encodes with the byte tokenizer.bin as train.Bytes does', got == [1] + train.Bytes().encode(prompt),
          r.stderr.strip()[-200:])


def generators(mixer):
    """The copy task's random strings: three showings, the first unscored, the later two scored; and
    the curriculum's phases keep the tokens per step."""
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(20):
        row, scored = mixer.copy(rng, 256)
        check_len = len(row) == 257 and len(scored) == 256
        if not check_len:
            check('a copy row is BOS + T tokens', False, f'{len(row)} {len(scored)}')
            return
        text = bytes((row[1:] - 3).astype(np.uint8)).decode('utf-8', 'replace')
        strings = [w for w in set(text.split()) if len(w) >= 8 and text.count(w) >= 3 and
                   all(c in train.ALNUM for c in w) and any(c.isdigit() for c in w) and any(c.isupper() for c in w)]
        if not strings:
            continue  # the other half: a span of text copied
        s = max(strings, key=len)
        starts = [i for i in range(len(text)) if text.startswith(s, i)]
        # scored[t] says whether row[t + 1] = text[t] is a target
        first, later = starts[0], starts[1:]
        ok = not scored[first:first + len(s)].any() and all(scored[i:i + len(s)].all() for i in later)
        check('a random string is planted three times, only its repeats scored', ok and len(starts) == 3, s)
        found += 1
        break
    check('some copy rows carry a random string', found == 1)
    args = train.argparse.Namespace(curriculum=True, seq_len=512, batch=16, steps=100)
    phases = [train.phase(step, args) for step in (0, 39, 40, 69, 70, 99)]
    check('the curriculum: rows of 128, 256 then 512 tokens, 8192 tokens a step',
          [p[0] for p in phases] == [128, 128, 256, 256, 512, 512] and all(p[0] * p[1] == 8192 for p in phases))
    check('each phase mix sums to 1', all(abs(sum(m.values()) - 1) < 1e-9 for _, _, m in train.CURRICULUM))


if __name__ == '__main__':
    main()
    print(f'{passed} passed, {failed} failed')
    sys.exit(1 if failed else 0)
