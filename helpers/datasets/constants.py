"""Folder names, label vocabularies and file names of every real layout (shared by readers and the demo twin)."""

# Folder of each dataset under ``config.data_root()``.
DATASET_DIRS = {
    "hw2p2": "hw2p2",
    "cs405": "cs405",
    "fairface": "fairface",
    "adience": "adience",
    "celeba": "celeba",
    "facecom": "facecom",
    "utkface": "utkface",
}

# CMU 11-785 HW2P2 (Spring 2024 style) and the later pairs variant.
HW2P2_CLS = "11-785-s24-hw2p2-classification"
HW2P2_VER = "11-785-s24-hw2p2-verification"
HW2P2_PAIRS = "ver_data"
HW2P2_NO_MATCH = "n000000"

# CS 405 Kaggle competition.
CS405_SLUG = "face-classification-deep-learning-cs-405"

# FairFace.
FAIRFACE_COLUMNS = ["file", "age", "gender", "race", "service_test"]
FAIRFACE_AGES = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]
FAIRFACE_GENDERS = ["Male", "Female"]
FAIRFACE_RACES = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
                  "Middle Eastern"]

# Adience.
ADIENCE_COLUMNS = ["user_id", "original_image", "face_id", "age", "gender", "x", "y", "dx", "dy",
                   "tilt_ang", "fiducial_yaw_angle", "fiducial_score"]
ADIENCE_AGES = ["(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)", "(60, 100)"]
ADIENCE_GENDERS = ["m", "f"]
ADIENCE_FOLDS = 5

# CelebA.
CELEBA_ATTRIBUTES = [
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
]
CELEBA_PARTITIONS = {0: "train", 1: "valid", 2: "test"}

# FACECOM (COMSYS Hackathon-5).
FACECOM_GENDERS = ["female", "male"]  # ImageFolder (sorted) order
# Suffixes of Task B's distorted files (<stem>_<suffix>.jpg, e.g. 001_frontal_foggy.jpg); the same names and
# order as helpers.distortions.DISTORTIONS, which draws each one.
FACECOM_DISTORTIONS = ["blurred", "foggy", "lowlight", "noisy", "rainy", "resized", "sunny"]

# UTKFace file names: <age>_<gender>_<race>_<date>.jpg
UTKFACE_GENDERS = ["male", "female"]
UTKFACE_RACES = ["White", "Black", "Asian", "Indian", "Others"]

# Kaggle sources (competition slugs above) and the folder each dataset's layout is recognised by.
KAGGLE_DATASETS = {
    "celeba": "jessicali9530/celeba-dataset",
    "utkface": "jangedoo/utkface-new",
    "adience": "ttungl/adience-benchmark-gender-and-age-classification",
}
MARKERS = {
    "hw2p2": (HW2P2_CLS, HW2P2_VER),
    "cs405": ("dataset/train",),
    "fairface": ("fairface_label_train.csv",),
    "adience": ("fold_0_data.txt",),
    "celeba": ("list_attr_celeba.txt", "list_attr_celeba.csv"),
    "facecom": ("Task_A", "Task_B"),
    "utkface": ("UTKFace", "crop_part1", "utkface_aligned_cropped"),
}
