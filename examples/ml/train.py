"""Trains a classifier on /data/train.csv (made up when missing), writes a report next to
it, and serves /data on $PORT so the report can be fetched from the host."""

import http.server
import json
import os
import functools

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

data_dir = os.environ.get("DATA_DIR", "/data")
path = os.path.join(data_dir, "train.csv")
if not os.path.exists(path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2))
    y = (x[:, 0] + x[:, 1] + rng.normal(scale=0.5, size=500) > 0).astype(int)
    pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "label": y}).to_csv(path, index=False)

frame = pd.read_csv(path)
features = frame.drop(columns=["label"])
x_train, x_test, y_train, y_test = train_test_split(
    features, frame["label"], test_size=0.25, random_state=0
)
model = LogisticRegression().fit(x_train, y_train)
report = {"rows": len(frame), "accuracy": round(float(model.score(x_test, y_test)), 3)}
with open(os.path.join(data_dir, "report.json"), "w") as f:
    json.dump(report, f)
print("trained:", json.dumps(report), flush=True)

handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=data_dir)
http.server.ThreadingHTTPServer(("", int(os.environ.get("PORT", "8888"))), handler).serve_forever()
