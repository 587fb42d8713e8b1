"""The online harmony LSTM in Keras's functional API, and its one-beat step model.

Training model: ``x [batch, beats, 117]`` (`jamd.music.chords.step_input`
per beat, zero rows as padding after a chorale's end) -> Masking -> LSTM
(`units`, one step per beat) -> Dropout -> three softmax heads: ``chord``
(49, this beat's chord), ``bass`` (12, its bass pitch class) and ``melody``
(13, the pitch class at this beat's first step, 12 a rest).  Padding is
masked out of the LSTM and, through Keras's mask, out of every loss; beats
without a target (no bass, or the melody head on a beat whose melody is
shown) get sample weight 0.  Loss weights: chord 1, bass and melody
`AUX_WEIGHT` each.

The step model (`build_step_model`) has the same weights and takes one beat
with explicit state, ``(x [1, 117], h [1, units], c [1, units]) ->
(chord_logits, bass_logits, melody_logits, h_out, c_out)``: the heads give
logits (their Dense layers without softmax) for the daemon to temper.
"""

from __future__ import annotations

import keras

from jamd.music import chords

HEADS = {"chord": chords.N_CHORDS, "bass": chords.N_BASS, "melody": chords.N_MELODY_CLASSES}
AUX_WEIGHT = 0.5
LOSS_WEIGHTS = {"chord": 1.0, "bass": AUX_WEIGHT, "melody": AUX_WEIGHT}


def build_training_model(units: int = 128, dropout: float = 0.2, learning_rate: float = 2e-3) -> keras.Model:
    """The sequence model, compiled with the three heads' sparse cross-entropies and chord accuracy."""
    x_in = keras.Input(shape=(None, chords.STEP_FEATURES), name="x")
    x = keras.layers.Masking(mask_value=0.0, name="padding")(x_in)  # a real beat never is all zeros
    x = keras.layers.LSTM(units, return_sequences=True, name="lstm")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = {name: keras.layers.Dense(n, activation="softmax", name=name)(x) for name, n in HEADS.items()}
    model = keras.Model(x_in, outputs, name="jamd_harmony")
    model.compile(
        loss={name: "sparse_categorical_crossentropy" for name in HEADS},
        loss_weights=LOSS_WEIGHTS,
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        metrics={"chord": ["accuracy"]},
    )
    return model


def build_step_model(trained: keras.Model) -> keras.Model:
    """One beat with explicit state; shares nothing with `trained` but its weights."""
    lstm = trained.get_layer("lstm")
    units = lstm.units
    x = keras.Input(shape=(chords.STEP_FEATURES,), name="x")
    h = keras.Input(shape=(units,), name="h")
    c = keras.Input(shape=(units,), name="c")
    seq = keras.layers.Reshape((1, chords.STEP_FEATURES), name="one_beat")(x)
    step_lstm = keras.layers.LSTM(units, return_state=True, name="lstm")
    y, h_out, c_out = step_lstm(seq, initial_state=[h, c])
    step_lstm.set_weights(lstm.get_weights())
    logits = []
    for name, n in HEADS.items():
        dense = keras.layers.Dense(n, name=f"{name}_logits")
        logits.append(dense(y))
        dense.set_weights(trained.get_layer(name).get_weights())
    return keras.Model([x, h, c], [*logits, h_out, c_out], name="jamd_harmony_step")
