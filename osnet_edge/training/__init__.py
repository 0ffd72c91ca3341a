"""Training core: datasets, samplers, augmentations, losses, recipes, the training loop.

    from osnet_edge.training.engine import train                      # train(config) -> result dict
    from osnet_edge.training.recipes import make_config, RECIPES      # paper-scratch, paper-finetune, paper-dml
    from osnet_edge.training.datasets import load_dataset             # "market1501:/path" -> ReidDataset
    from osnet_edge.training.synthetic_dataset import make_market_dataset

Modules: datasets (torch-free readers), synthetic_dataset (rendered Market-layout data, torch-free),
sampler (random / P x K batches, DDP-aware), transforms (OpenCV augmentations), data (Dataset +
DataLoader), losses, optim (optimisers, schedules, fixbase), recipes (TrainConfig), engine (the
loop, checkpoints, resume, DDP), cli (osnet-train, osnet-eval). Evaluation lives in
osnet_edge.evaluation (torch-free, shared with exported artifacts).
"""
