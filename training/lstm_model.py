"""The seed's LSTM (chapter 3.1, appendix A.1.2), built with Keras's functional API.

One LSTM of 256 units, dropout 0.2, a softmax over the vocabulary, Adam at
1e-3, as in the seed, with two changes that leave the model itself the same:

* Inputs are token ids one-hot encoded inside the model (`OneHot`), which is
  the seed's one-hot input without materialising a (windows, 64, vocab) array.
* Every step has a target (`return_sequences=True`) instead of one target per
  64-step window, which is ~64x less work per epoch for the same model.

The functional API matters: tf2onnx 1.17 fails on Sequential models.
"""

from __future__ import annotations

import keras

from jamd.tokens import METRIC_POSITIONS


@keras.saving.register_keras_serializable(package="jamd")
class OneHot(keras.layers.Layer):
    """Token ids -> one-hot vectors (the seed's `to_categorical`, in-graph)."""

    def __init__(self, depth: int, **kwargs):
        super().__init__(**kwargs)
        self.depth = depth

    def call(self, x):
        return keras.ops.one_hot(keras.ops.cast(x, "int32"), self.depth)

    def get_config(self) -> dict:
        return {**super().get_config(), "depth": self.depth}


def build_training_model(vocab_size: int, units: int = 256, dropout: float = 0.2,
                         learning_rate: float = 1e-3, layers: int = 1,
                         metric_position: bool = False) -> keras.Model:
    """The LSTM over whole windows: (batch, steps) token ids -> (batch, steps, vocab_size) softmax.

    layers: stacked LSTMs of `units` each (the seed: 1; layer names "lstm", "lstm_2", ...).
    metric_position: a second input "position", (batch, steps) int32 in 0..METRIC_POSITIONS-1,
    the bar position of the step each output predicts (`jamd.tokens.bar_positions`), one-hot
    encoded beside the token.  Without it the model has one input, "tokens", as the seed's.
    """
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = OneHot(vocab_size, name="one_hot")(tokens)
    inputs: list = [tokens]
    if metric_position:
        position = keras.Input(shape=(None,), dtype="int32", name="position")
        x = keras.layers.Concatenate(name="with_position")(
            [x, OneHot(METRIC_POSITIONS, name="position_one_hot")(position)])
        inputs.append(position)
    for i in range(layers):
        x = keras.layers.LSTM(units, return_sequences=True, name=lstm_layer_name(i))(x)
        x = keras.layers.Dropout(dropout, name="dropout" if i == layers - 1 else f"dropout_{i + 1}")(x)
    probs = keras.layers.Dense(vocab_size, activation="softmax", name="output")(x)
    model = keras.Model(inputs if metric_position else tokens, probs, name="jamd_lstm")
    model.compile(
        loss="sparse_categorical_crossentropy",
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        metrics=["accuracy"],
    )
    return model


def lstm_layer_name(i: int) -> str:
    """Name of the i-th stacked LSTM (0-based): "lstm" for the first, as in one-layer models."""
    return "lstm" if i == 0 else f"lstm_{i + 1}"


def stacked_layers(trained: keras.Model) -> int:
    """How many stacked LSTMs `trained` has (layers "lstm", "lstm_2", ...)."""
    names = {layer.name for layer in trained.layers}
    n = 0
    while lstm_layer_name(n) in names:
        n += 1
    return n


def has_position(trained: keras.Model) -> bool:
    """Whether `trained` reads the metric-position input ("position")."""
    return any(getattr(t, "name", "").split(":")[0] == "position" for t in trained.inputs)


def state_names(i: int) -> tuple[str, str, str, str]:
    """Input and output names of layer i's (0-based) state in the Keras step model:
    ("h", "c", "h_out", "c_out") for the first, as the seed's one-layer model has them,
    then ("h_2", "c_2", "h_out_2", "c_out_2"), ..."""
    tail = "" if i == 0 else f"_{i + 1}"
    return f"h{tail}", f"c{tail}", f"h_out{tail}", f"c_out{tail}"


def build_step_model(trained: keras.Model) -> keras.Model:
    """One step with explicit state: (token, [position], h, c, [h_2, c_2, ...]) ->
    (logits, h_out, c_out, [h_out_2, c_out_2, ...]).

    token and position: (batch, 1) int32 (position: the bar position of the step the
    logits predict, as in training); each h/c: (batch, units) float32.  A one-layer
    model without position has exactly the seed's interface (token, h, c) ->
    (logits, h_out, c_out).  The ONNX export (`jamd.export.lstm_onnx`) stacks the
    layers' states into one h and one c of [layers, 1, units].

    Shares nothing with `trained` but its weights.  The output layer is the
    trained Dense without its softmax: logits let the daemon sample at any
    temperature without log(0).
    """
    layers = stacked_layers(trained)
    positioned = has_position(trained)
    dense = trained.get_layer("output")
    vocab_size = dense.units
    token = keras.Input(shape=(1,), dtype="int32", name="token")
    inputs: list = [token]
    x = OneHot(vocab_size, name="one_hot")(token)
    if positioned:
        position = keras.Input(shape=(1,), dtype="int32", name="position")
        inputs.append(position)
        x = keras.layers.Concatenate(name="with_position")(
            [x, OneHot(METRIC_POSITIONS, name="position_one_hot")(position)])
    outputs: list = []
    copies = []
    for i in range(layers):
        trained_lstm = trained.get_layer(lstm_layer_name(i))
        units = trained_lstm.units
        h_name, c_name, _, _ = state_names(i)
        h = keras.Input(shape=(units,), name=h_name)
        c = keras.Input(shape=(units,), name=c_name)
        inputs += [h, c]
        # every layer but the last hands the next its (one-step) sequence output
        step_lstm = keras.layers.LSTM(units, return_state=True, return_sequences=i < layers - 1,
                                      name=lstm_layer_name(i))
        x, h_out, c_out = step_lstm(x, initial_state=[h, c])
        outputs += [h_out, c_out]
        copies.append((step_lstm, trained_lstm))
    step_dense = keras.layers.Dense(vocab_size, name="logits")
    logits = step_dense(x)
    model = keras.Model(inputs, [logits, *outputs], name="jamd_lstm_step")
    for step_lstm, trained_lstm in copies:
        step_lstm.set_weights(trained_lstm.get_weights())
    step_dense.set_weights(dense.get_weights())
    return model
