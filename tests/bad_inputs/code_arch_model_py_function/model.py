def make_net(**kwargs):
    raise SystemExit('called')
