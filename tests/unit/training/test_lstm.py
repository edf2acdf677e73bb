"""The LSTM forecaster in plain torch: windows, shapes, learning, determinism, forecasts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training import lstm


def ar_prices(n: int, *, phi: float = 0.8, seed: int = 0, vol: float = 0.01) -> np.ndarray:
    """Prices whose log returns follow an AR(1): predictable, unlike a random walk."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = phi * r[t - 1] + vol * rng.standard_normal()
    return 100.0 * np.exp(np.cumsum(r))


def series(n: int = 300, assets: int = 3) -> dict[str, np.ndarray]:
    return {f"asset-{i}": ar_prices(n, seed=i, vol=0.01 * (i + 1)) for i in range(assets)}


def train(seed: int, data: dict[str, np.ndarray], *, epochs: int = 4, lookback: int = 10,
          ) -> tuple[lstm.LSTMForecaster, lstm.Windows, list[float]]:
    lstm.seed_everything(seed)
    w = lstm.make_windows(data, lookback=lookback)
    model = lstm.LSTMForecaster(hidden_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    dl = lstm.loader(w.train_x, w.train_y, batch_size=32, shuffle=True, seed=seed)
    losses = [lstm.fit_epoch(model, dl, opt) for _ in range(epochs)]
    return model, w, losses


def test_windows_are_split_in_time_and_scaled_per_asset() -> None:
    data = series(n=101, assets=2)
    w = lstm.make_windows(data, lookback=10, val_fraction=0.2)
    # 100 returns → 90 windows per asset, 18 of them validate.
    assert w.train_x.shape == (2 * 72, 10, 1)
    assert w.train_y.shape == (2 * 72,)
    assert w.val_x.shape == (2 * 18, 10, 1)
    # The target of a window is the step after it: the next window's last input.
    assert torch.equal(w.train_x[1, -1, 0], w.train_y[0])
    # Scaled with training statistics: the training targets are about standard.
    assert abs(float(w.train_y[:72].mean())) < 0.3
    assert set(w.scalers) == {"asset-0", "asset-1"}
    assert w.scalers["asset-1"].std > w.scalers["asset-0"].std


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        lstm.make_windows({"a": np.array([1.0, 2.0, 3.0])}, lookback=10)
    with pytest.raises(ValueError):
        lstm.log_returns(np.array([1.0, -1.0, 2.0]))


def test_model_shapes() -> None:
    model = lstm.LSTMForecaster(hidden_size=8, num_layers=2, dropout=0.1)
    assert model(torch.zeros(5, 12, 1)).shape == (5,)


def test_learns_an_autoregressive_series_better_than_naive() -> None:
    model, w, losses = train(0, series())
    val = lstm.evaluate(model, lstm.loader(w.val_x, w.val_y, batch_size=64, shuffle=False))
    naive = lstm.naive_mse(w.val_y)
    assert losses[-1] < losses[0]
    # AR(1) with phi = 0.8 leaves 1 - 0.64 of the variance unexplained at best.
    assert val < 0.6 * naive, (val, naive)


def test_training_is_deterministic_with_a_seed() -> None:
    data = series(n=150, assets=2)
    _, _, a = train(7, data, epochs=2)
    _, _, b = train(7, data, epochs=2)
    _, _, c = train(8, data, epochs=2)
    assert a == b
    assert a != c


def test_forecast_iterates_the_mean_path() -> None:
    data = series()
    model, w, _ = train(0, data)
    history = data["asset-0"]
    path = lstm.forecast(model, history, 5, lookback=10, scaler=w.scalers["asset-0"])
    assert path.shape == (5,)
    assert np.all(np.isfinite(path)) and np.all(path > 0)
    # The first step is the model's one-step prediction, compounded from the last close.
    r = lstm.log_returns(history)[-10:]
    with torch.no_grad():
        z = float(model(torch.tensor(w.scalers["asset-0"].transform(r), dtype=torch.float32)
                        .view(1, 10, 1)))
    assert path[0] == pytest.approx(history[-1] * np.exp(w.scalers["asset-0"].inverse(z)))
    # Momentum: after a run of rises an AR(1) model with phi > 0 keeps rising.
    up = 100.0 * np.exp(np.cumsum(np.full(40, 0.02)))
    assert lstm.forecast(model, up, 1, lookback=10, scaler=w.scalers["asset-0"])[0] > up[-1]


def test_checkpoint_round_trip(tmp_path) -> None:
    model, w, _ = train(0, series(n=120, assets=1), epochs=1)
    opt = torch.optim.Adam(model.parameters())
    lstm.save_checkpoint(tmp_path, model=model, optimizer=opt, epoch=3,
                         config={"lookback": 10, "series": object()}, scalers=w.scalers)
    loaded, meta = lstm.load_model(tmp_path, device=torch.device("cpu"))
    assert meta["epoch"] == 3 and meta["config"] == {"lookback": 10}
    assert meta["scalers"] == w.scalers
    x = w.val_x[:4]
    model.eval()
    assert torch.allclose(loaded(x), model(x))


def test_default_device_follows_cuda() -> None:
    assert lstm.default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def _led_by_a_feature(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Closes whose next return is half the feature known today: invisible in the returns."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(n)
    r = np.zeros(n)
    r[1:] = 0.01 * (0.5 * signal[:-1] + 0.3 * rng.standard_normal(n - 1))
    return 100.0 * np.exp(np.cumsum(r)), np.column_stack([signal, np.ones(n)])


def test_features_become_channels_beside_the_returns() -> None:
    closes, feats = _led_by_a_feature(101, seed=1)
    plain = lstm.make_windows({"a": closes}, lookback=10)
    wide = lstm.make_windows({"a": closes}, lookback=10, exogenous={"a": feats})
    assert wide.train_x.shape == (*plain.train_x.shape[:2], 3)
    torch.testing.assert_close(wide.train_x[..., 0], plain.train_x[..., 0])
    torch.testing.assert_close(wide.train_y, plain.train_y)
    assert torch.all(wide.train_x[..., 2] == 0)  # a constant feature carries nothing
    with pytest.raises(ValueError, match="one row per close"):
        lstm.make_windows({"a": closes}, lookback=10, exogenous={"a": feats[:-1]})


def test_a_model_with_features_learns_what_the_returns_cannot_show() -> None:
    data = {f"a{i}": _led_by_a_feature(400, seed=i) for i in range(3)}
    closes = {a: c for a, (c, _) in data.items()}
    feats = {a: f for a, (_, f) in data.items()}
    losses = {}
    for name, exo in (("plain", None), ("features", feats)):
        lstm.seed_everything(0)
        w = lstm.make_windows(closes, lookback=5, exogenous=exo)
        model = lstm.LSTMForecaster(input_size=w.train_x.shape[-1], hidden_size=16)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        dl = lstm.loader(w.train_x, w.train_y, batch_size=32, shuffle=True)
        for _ in range(8):
            lstm.fit_epoch(model, dl, opt)
        losses[name] = lstm.evaluate(model, lstm.loader(w.val_x, w.val_y, batch_size=256,
                                                        shuffle=False))
    assert losses["features"] < 0.6 * losses["plain"], losses

    # Forecasting needs the features the model was trained with; the path holds the last row.
    with pytest.raises(ValueError, match="pass exogenous"):
        lstm.forecast(model, closes["a0"], 3, lookback=5)
    path = lstm.forecast(model, closes["a0"], 3, lookback=5, exogenous=feats["a0"])
    assert path.shape == (3,) and np.all(path > 0)
