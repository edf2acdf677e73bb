"""An LSTM forecaster trained across assets on normalised daily log returns.

Each asset's closes become log returns, standardised with that asset's own mean and
standard deviation (measured on its training part only), so one network learns the
shape of return dynamics shared by treasuries, gold and real estate alike without the
high-volatility assets dominating the loss. A sample is a ``lookback`` window of
standardised returns; its target is the next standardised return. The split is
chronological per asset: the last ``val_fraction`` of each asset's windows validate.

Forecasts iterate one step at a time, feeding each predicted return back in (the mean
path); prices follow by compounding the de-standardised returns from the last close.

Everything here is plain torch: the Ray Train loop (:mod:`training.train_loop`) calls
these functions on each worker.
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

MODEL_VERSION = "lstm-v1"
#: Name of the file a checkpoint directory holds.
CHECKPOINT_FILE = "lstm.pt"


def default_device() -> torch.device:
    """``cuda`` when a GPU is visible, otherwise ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a run repeats exactly on the same device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Scaler:
    """Per-asset standardisation of log returns."""

    mean: float
    std: float

    def transform(self, r: np.ndarray) -> np.ndarray:
        return (r - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean


def log_returns(closes: np.ndarray) -> np.ndarray:
    closes = np.asarray(closes, dtype=np.float64)
    if closes.ndim != 1 or len(closes) < 2:
        raise ValueError("closes must be a 1-D series of at least two prices")
    if not np.all(np.isfinite(closes)) or np.any(closes <= 0):
        raise ValueError("closes must be finite and strictly positive")
    return np.diff(np.log(closes))


def fit_scaler(returns: np.ndarray) -> Scaler:
    std = float(np.std(returns))
    return Scaler(mean=float(np.mean(returns)), std=std if std > 1e-12 else 1.0)


@dataclass
class Windows:
    """Training and validation samples over all assets: ``x`` is (N, lookback, channels),
    channel 0 the standardised returns and the rest the features, if any."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    scalers: dict[str, Scaler] = field(default_factory=dict)


def _windows(z: np.ndarray, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows (n, lookback, channels) of a (T, channels) array and channel 0's next value."""
    n = len(z) - lookback
    if n <= 0:
        return np.empty((0, lookback, z.shape[1])), np.empty(0)
    idx = np.arange(lookback)[None, :] + np.arange(n)[:, None]
    return z[idx], z[lookback:, 0]


def _channels(z: np.ndarray, exogenous: np.ndarray | None, fit_rows: int) -> np.ndarray:
    """Standardised returns as channel 0, then the exogenous features standardised
    with statistics of the first ``fit_rows`` rows; shape (len(z), channels)."""
    if exogenous is None or exogenous.shape[1] == 0:
        return z[:, None]
    from training.features import standardise

    return np.column_stack([z, standardise(exogenous, fit_rows=fit_rows)])


def _aligned(exogenous: Mapping[str, np.ndarray] | None, asset_id: str,
             closes: np.ndarray) -> np.ndarray | None:
    """The asset's features for each return (rows 1.. of the closes' rows)."""
    if exogenous is None:
        return None
    feats = np.asarray(exogenous[asset_id], dtype=np.float64)
    if feats.ndim != 2 or len(feats) != len(closes):
        raise ValueError(f"{asset_id}: features must be one row per close "
                         f"({len(closes)}), got shape {feats.shape}")
    return feats[1:]


def make_windows(series: Mapping[str, np.ndarray], *, lookback: int,
                 val_fraction: float = 0.2,
                 exogenous: Mapping[str, np.ndarray] | None = None) -> Windows:
    """Cut every asset's closes into (window, next return) samples, split in time.

    Args:
        series: Asset id -> daily closes, oldest first.
        lookback: Days a window holds.
        val_fraction: The latest share of each asset's windows kept for validation.
        exogenous: Asset id -> features (one row per close, :mod:`training.features`),
            read as channels beside the returns; every asset in ``series`` needs them.

    Assets too short for one training and one validation window are left out.
    """
    if lookback < 1:
        raise ValueError("lookback must be at least 1")
    tx, ty, vx, vy, scalers = [], [], [], [], {}
    for asset_id, closes in sorted(series.items()):
        r = log_returns(closes)
        n_windows = len(r) - lookback
        n_val = max(1, round(n_windows * val_fraction))
        if n_windows - n_val < 1:
            continue
        # Statistics from the returns the training windows see, never the validation part.
        fit_rows = len(r) - n_val
        scaler = fit_scaler(r[:fit_rows])
        z = scaler.transform(r)
        x, y = _windows(_channels(z, _aligned(exogenous, asset_id, closes), fit_rows), lookback)
        y = z[lookback:]
        tx.append(x[:-n_val])
        ty.append(y[:-n_val])
        vx.append(x[-n_val:])
        vy.append(y[-n_val:])
        scalers[asset_id] = scaler
    if not scalers:
        raise ValueError(f"no asset has enough data for lookback {lookback}")

    def t(parts: list[np.ndarray]) -> torch.Tensor:
        return torch.tensor(np.concatenate(parts), dtype=torch.float32)

    return Windows(t(tx), t(ty), t(vx), t(vy), scalers)


class LSTMForecaster(nn.Module):
    """A stacked LSTM reading a window of features and predicting the next return."""

    def __init__(self, *, input_size: int = 1, hidden_size: int = 32, num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.hparams = {"input_size": input_size, "hidden_size": hidden_size,
                        "num_layers": num_layers, "dropout": dropout}
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :]).squeeze(-1)


def loader(x: torch.Tensor, y: torch.Tensor, *, batch_size: int, shuffle: bool,
           seed: int = 0) -> DataLoader:
    """A DataLoader whose shuffling order depends only on ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle,
                      generator=gen if shuffle else None)


def fit_epoch(model: nn.Module, data: DataLoader, optimizer: torch.optim.Optimizer, *,
              device: torch.device | None = None, clip_norm: float = 1.0) -> float:
    """One pass over ``data``; returns the mean squared error per sample."""
    model.train()
    total, count = 0.0, 0
    for x, y in data:
        if device is not None:
            x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        total += float(loss.detach()) * len(y)
        count += len(y)
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, data: DataLoader, *, device: torch.device | None = None) -> float:
    """Mean squared error per sample over ``data``, without training."""
    model.eval()
    total, count = 0.0, 0
    for x, y in data:
        if device is not None:
            x, y = x.to(device), y.to(device)
        total += float(nn.functional.mse_loss(model(x), y, reduction="sum"))
        count += len(y)
    return total / max(count, 1)


@torch.no_grad()
def forecast(model: LSTMForecaster, history: np.ndarray, horizon: int, *, lookback: int,
             scaler: Scaler | None = None, exogenous: np.ndarray | None = None) -> np.ndarray:
    """Point forecasts of the next ``horizon`` closes after ``history`` (the mean path).

    Args:
        model: A trained forecaster.
        history: Closes, oldest first; at least ``lookback + 1`` of them.
        horizon: Steps ahead.
        lookback: The window length the model was trained with.
        scaler: The asset's scaler from training; fitted on ``history`` when omitted.
        exogenous: Features, one row per close, for a model trained with them. Future
            features are unknown, so each step ahead holds the last row (persistence).
    """
    if horizon < 1:
        raise ValueError("horizon must be at least 1")
    r = log_returns(history)
    if len(r) < lookback:
        raise ValueError(f"history needs at least {lookback + 1} closes")
    channels = int(model.hparams.get("input_size", 1))
    if channels > 1 and exogenous is None:
        raise ValueError(f"this model reads {channels - 1} feature(s) beside the returns; "
                         "pass exogenous")
    scaler = scaler or fit_scaler(r)
    feats = _aligned({"": exogenous}, "", history) if channels > 1 else None
    rows = _channels(scaler.transform(r), feats, len(r))
    device = next(model.parameters()).device
    window = torch.tensor(rows[-lookback:], dtype=torch.float32, device=device)
    held = window[-1, 1:]
    model.eval()
    steps = []
    for _ in range(horizon):
        z = model(window.view(1, lookback, channels))
        steps.append(float(z))
        window = torch.cat([window[1:], torch.cat([z.view(1), held]).view(1, channels)])
    returns = scaler.inverse(np.asarray(steps))
    return float(history[-1]) * np.exp(np.cumsum(returns))


def naive_mse(y: torch.Tensor) -> float:
    """The error of predicting zero standardised return (the random walk)."""
    return float(torch.mean(y**2))


# --- checkpoints -----------------------------------------------------------------------


def save_checkpoint(directory: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer
                    | None, epoch: int, config: Mapping, scalers: Mapping[str, Scaler]) -> Path:
    """Write model and optimiser state, the completed epoch count and the config."""
    path = Path(directory) / CHECKPOINT_FILE
    net = getattr(model, "module", model)  # unwrap DDP
    state = {
        "model": net.state_dict(),
        "hparams": net.hparams,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": epoch,
        "config": {k: v for k, v in config.items() if _plain(v)},
        "scalers": {a: (s.mean, s.std) for a, s in scalers.items()},
        "model_version": MODEL_VERSION,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    path.write_bytes(buf.getvalue())
    return path


def _plain(v: object) -> bool:
    return isinstance(v, (int, float, str, bool, type(None)))


def load_state(directory: str | Path) -> dict:
    """The raw checkpoint dictionary saved by :func:`save_checkpoint`."""
    return torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)


def load_model(directory: str | Path, *, device: torch.device | None = None,
               ) -> tuple[LSTMForecaster, dict]:
    """A ready-to-forecast model and its checkpoint metadata (config, scalers, epoch)."""
    state = load_state(directory)
    model = LSTMForecaster(**state["hparams"])
    model.load_state_dict(state["model"])
    model.to(device or default_device())
    model.eval()
    state["scalers"] = {a: Scaler(m, s) for a, (m, s) in state["scalers"].items()}
    return model, state
