"""`fedtext data` and `fedtext generate`: the clients, and text from a model, without TensorFlow."""

from __future__ import annotations

import argparse

from fedtext.cli.args import chosen_base_dir
from fedtext.model.generation import load_generator
from fedtext.text import plays
from fedtext.text.prompt import TUTORIAL_PROMPT, check_request


def cmd_data(args: argparse.Namespace) -> int:
    path = plays.database_path(rebuild=args.rebuild)
    clients = plays.load_clients(path)
    info = plays.load_info(path)
    train = sum(c.train_speeches for c in clients)
    test = sum(c.test_speeches for c in clients)
    pub = plays.TFF_PUBLISHED
    print(f"{'':24}{'fedtext':>10}{'TFF':>10}")
    print(f"{'clients':24}{len(clients):>10,}{pub['clients']:>10,}")
    print(f"{'train examples':24}{train:>10,}{pub['train_examples']:>10,}")
    print(f"{'test examples':24}{test:>10,}{pub['test_examples']:>10,}")
    print(
        f"play-character pairs {info['play_character_pairs']:,}, "
        f"{info['dropped_single_speech']:,} dropped with a single speech; "
        f"{sum(c.train_chars + c.test_chars for c in clients):,} characters; "
        f"{sum(c.tutorial_would_drop for c in clients):,} clients have less than one "
        f"tutorial batch of training text (kept here, padded)"
    )
    shown = plays.search_clients(clients, " ".join(args.query)) if args.query else clients
    if args.sort == "size":
        shown = sorted(shown, key=lambda c: -(c.train_chars + c.test_chars))
    if args.query and not shown:
        print(f"no client matches {' '.join(args.query)!r}")
        return 1
    limit = len(shown) if args.limit <= 0 else args.limit
    print(f"\n{'client id':48} {'speeches':>9} {'chars':>8}  play / character")
    for c in shown[:limit]:
        mark = " *" if c.tutorial_would_drop else ""
        print(
            f"{c.client_id:48} {c.train_speeches:>4}+{c.test_speeches:<4} "
            f"{c.train_chars + c.test_chars:>8,}  {c.play} / {c.character}{mark}"
        )
    if len(shown) > limit:
        print(f"... {len(shown) - limit} more (use --limit 0)")
    print("speeches: train+test; * the tutorial's pipeline would have dropped this client")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    prompt = TUTORIAL_PROMPT if args.prompt is None else args.prompt
    check_request(prompt, args.length, args.temperature)  # fail before the model loads

    generator = load_generator(chosen_base_dir(args.model))
    print(generator.generate(prompt, args.length, args.temperature, args.seed))
    return 0
