"""`make demo`: the SDK's main job, end to end, on generated data."""
from __future__ import annotations


def main():
    from .complexity import complexity, print_table6
    from .models import build_model

    model = build_model("osnet_x0_25")
    print(f"osnet_x0_25: {complexity(model)}")
    print()
    print_table6()


if __name__ == "__main__":
    main()
