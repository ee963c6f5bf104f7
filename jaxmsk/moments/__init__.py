"""EMG-driven joint moments along measured kinematics, calibrated against inverse dynamics.

    recording = read_moment_recording(emg="emg.sto", kinematics="ik.sto", moments="id.sto",
                                      coordinates=model.coordinate_names)
    model, info = load_emg_driven_model("subject.osim", channels, side="r")
    calibration = calibrate_moments(model, recording, span=(t0, t1))
    tau = model.moments(calibration.params, recording.emg, recording.q, recording.qdot,
                        recording.rate)

See docs/moments.md; the CLI is `jaxmsk moments`.
"""

from ._calibrate import BOUNDS as BOUNDS
from ._calibrate import FITTABLE as FITTABLE
from ._calibrate import MomentCalibration as MomentCalibration
from ._calibrate import calibrate_moments as calibrate_moments
from ._calibrate import metrics as metrics
from ._load import load_emg_driven_model as load_emg_driven_model
from ._model import EMG_CHANNEL_MUSCLES as EMG_CHANNEL_MUSCLES
from ._model import EMGDrivenModel as EMGDrivenModel
from ._model import MomentParameters as MomentParameters
from ._model import map_channels as map_channels
from ._model import mapping_matrix as mapping_matrix
from ._recording import MomentRecording as MomentRecording
from ._recording import read_moment_recording as read_moment_recording
